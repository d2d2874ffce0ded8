"""haq-rl: hardware-aware mixed-precision quantization with reinforcement learning (HAQ).

Importing ``haq_rl`` loads nothing else. ``import haq_rl.env`` registers the Gymnasium
ids; ``gymnasium.make("haq_rl.env:haq_rl/<Name>-vN")`` imports it on the way.
"""

__version__ = "0.1.0"
