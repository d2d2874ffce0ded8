"""The Gymnasium environment (gymnasium only; never stable-baselines3).

Importing :mod:`haq_rl` registers the shipped specs as ``haq_rl/<Name>-v0`` ids.
Heavy modules (torch, the model zoo) load lazily when an environment is made.
"""

from haq_rl.env.bits import action_to_bits, bits_to_action
from haq_rl.env.registration import DEFAULT_ENV_ID, register_envs, resolve_spec, shipped_specs
from haq_rl.env.spec import OBJECTIVES, EnvSpec

__all__ = [
    "DEFAULT_ENV_ID",
    "OBJECTIVES",
    "EnvSpec",
    "QuantizationEnv",
    "action_to_bits",
    "bits_to_action",
    "make_env",
    "register_envs",
    "resolve_spec",
    "shipped_specs",
]


def __getattr__(name: str):
    # QuantizationEnv and make_env import torch; load them on first use only.
    if name == "QuantizationEnv":
        from haq_rl.env.quant_env import QuantizationEnv

        return QuantizationEnv
    if name == "make_env":
        from haq_rl.env.factory import make_env

        return make_env
    raise AttributeError(name)
