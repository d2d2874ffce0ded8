"""haq-rl: hardware-aware mixed-precision quantization with reinforcement learning (HAQ)."""

__version__ = "0.1.0"

from haq_rl.env.registration import register_envs as _register_envs  # noqa: E402

_register_envs()
