import sys

from haq_rl.cli import main

sys.exit(main())
