"""haq_rl.quant"""
