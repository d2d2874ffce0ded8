from haq_rl.cli import entry

entry()
