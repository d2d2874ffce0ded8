"""Saving and loading an agent with its replay buffer, for resumable searches.

The agent is an SB3 zip (``model.save``); the replay buffer is SB3's own pickle, which
only this process's ``--resume`` reads back (never a file to exchange).
"""

from __future__ import annotations

import base64
import random
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import numpy as np
import torch

from haq_rl.agent.algos import ALGO_CLASSES
from haq_rl.agent.config import AgentConfig

if TYPE_CHECKING:
    from stable_baselines3.common.off_policy_algorithm import OffPolicyAlgorithm


def save_agent(model: Any, agent_path: Path, replay_path: Path) -> None:
    """Write the agent (SB3 zip) and its replay buffer."""
    model.save(agent_path)
    model.save_replay_buffer(replay_path)


def load_agent(agent_path: Path, replay_path: Path, env: Any, config: AgentConfig) -> Any:
    """The agent saved by :func:`save_agent`, attached to ``env``, with its replay buffer."""
    # The ALGO_CLASSES are HaqAlgorithmMixin + an SB3 off-policy class, whose load() they inherit.
    algo_class = cast("type[OffPolicyAlgorithm]", ALGO_CLASSES[config.algo])
    model = algo_class.load(agent_path, env=env, device=config.device)
    model.load_replay_buffer(replay_path)
    return model


def random_state(model: Any) -> dict[str, Any]:
    """The random streams an agent's next episodes draw from, as JSON-ready lists.

    NumPy's global generator (SB3's replay sampling), torch's (TD3's target noise, SAC's
    sampling), Python's, and the action space's (HAQ's uniform warm-up). The exploration
    noise keeps its own generator inside the agent's zip. SB3's ``load`` reseeds all of
    these from the seed, so a resumed search restores them with :func:`restore_random_state`
    to continue exactly where the checkpoint was taken.
    """
    name, keys, position, has_gauss, cached = np.random.get_state()
    return {
        "numpy": [name, np.asarray(keys).tolist(), int(position), int(has_gauss), float(cached)],
        "torch": base64.b64encode(torch.get_rng_state().numpy().tobytes()).decode("ascii"),
        "python": _lists(random.getstate()),
        "action_space": _lists(model.action_space.np_random.bit_generator.state),
    }


def restore_random_state(model: Any, state: dict[str, Any]) -> None:
    """Undo SB3's reseeding at load: the streams as :func:`random_state` saved them."""
    name, keys, position, has_gauss, cached = state["numpy"]
    np.random.set_state((name, np.asarray(keys, dtype=np.uint32), position, has_gauss, cached))
    torch.set_rng_state(torch.from_numpy(np.frombuffer(base64.b64decode(state["torch"]), dtype=np.uint8).copy()))
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    model.action_space.np_random.bit_generator.state = state["action_space"]


def _lists(value: Any) -> Any:
    """Tuples to lists, recursively (JSON keeps lists; the restorers turn them back)."""
    if isinstance(value, tuple | list):
        return [_lists(item) for item in value]
    if isinstance(value, dict):
        return {key: _lists(item) for key, item in value.items()}
    return value
