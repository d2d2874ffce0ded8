"""The quantization task, free of gymnasium and stable-baselines3.

:mod:`haq_rl.task.budget` holds every budget rule (pinned layers, the 8/8 reference,
the tolerance, uniform policies, the largest uniform within budget, the room check).
"""
