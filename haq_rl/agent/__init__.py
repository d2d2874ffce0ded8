"""haq_rl.agent"""
