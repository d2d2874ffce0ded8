"""haq-rl: hardware-aware mixed-precision quantization with reinforcement learning (HAQ)."""

__version__ = "0.1.0"
