"""The Gymnasium adapter over a :class:`~haq_rl.task.Task` (gymnasium only; never stable-baselines3).

Importing :mod:`haq_rl.env` registers the shipped specs as ``haq_rl/<Name>-vN`` ids;
``gymnasium.make("haq_rl.env:haq_rl/<Name>-vN")`` imports it first, which is what spawned
workers need. Heavy modules (torch, the model zoo) load lazily when an environment is made.
"""

import os
import sys
from typing import Any

from haq_rl.env.registration import DeprecatedEnvWarning, register_envs
from haq_rl.task.spec import DEFAULT_ENV_ID
from haq_rl.task.steps import action_to_bits, bits_to_action

__all__ = [
    "DEFAULT_ENV_ID",
    "DeprecatedEnvWarning",
    "QuantizationEnv",
    "action_to_bits",
    "bits_to_action",
    "make_env",
    "register_envs",
]

register_envs()


def _one_torch_thread_after_fork() -> None:
    """A forked child (``gymnasium.make_vec(..., vectorization_mode="async")``) starts with
    one torch thread, as PyTorch's own DataLoader workers do: the parent's OpenMP pool
    does not survive fork, and the child's first parallel op would hang forever."""
    torch = sys.modules.get("torch")
    if torch is not None:
        torch.set_num_threads(1)


os.register_at_fork(after_in_child=_one_torch_thread_after_fork)


def __getattr__(name: str) -> Any:
    # QuantizationEnv and make_env import torch; load them on first use only.
    if name == "QuantizationEnv":
        from haq_rl.env.quant_env import QuantizationEnv

        return QuantizationEnv
    if name == "make_env":
        from haq_rl.env.factory import make_env

        return make_env
    raise AttributeError(name)
