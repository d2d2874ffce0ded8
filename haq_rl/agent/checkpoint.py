"""Saving and loading an agent with its replay buffer, for resumable searches.

The agent is an SB3 zip (``model.save``); the replay buffer is SB3's own pickle, which
only this process's ``--resume`` reads back (never a file to exchange).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

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
