"""haq_rl.data"""
