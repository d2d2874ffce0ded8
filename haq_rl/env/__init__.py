"""haq_rl.env"""
