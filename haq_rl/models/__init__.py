"""haq_rl.models"""
