"""The RL driver with several workers: ``workers`` episodes per agent update, evaluated together.

The agent steps a :class:`~haq_rl.search.vec_env.BatchedEpisodeVecEnv` of ``workers``
copies of the env; their episodes end on the same step, their policies are evaluated as
one batch in the pool, and the replay buffer gives each env's steps that env's own final
reward (HAQ's credit assignment, per episode). SB3 then runs ``T`` gradient steps per
episode collected, as HAQ does after each episode.

Checkpoints are taken between batches, after the agent's update, together with the
random states that SB3 draws from and does not save (numpy's and torch's global ones,
the action space's), so a resumed search records the rows the uninterrupted one would have.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from haq_rl.search.checkpoint import save_checkpoint
from haq_rl.search.config import SearchConfig
from haq_rl.search.recorder import Recorder
from haq_rl.search.setup import SearchSetup

logger = logging.getLogger(__name__)


def search_rl_batched(setup: SearchSetup, config: SearchConfig, recorder: Recorder) -> None:
    """:func:`~haq_rl.search.rl.search_rl` with ``config.workers`` episodes per batch.

    The last batch of learning episodes may run past ``episodes - 1``: its extra episodes
    are evaluated but not recorded. The warm-up is rounded up to whole batches.
    """
    from haq_rl.agent import EpisodeRecorder, learn_episodes, random_state
    from haq_rl.search.rl import (
        GUIDED_METHOD,
        _deterministic_rollout,
        agent_config_for,
        start_agent,
    )
    from haq_rl.search.vec_env import BatchedEpisodeVecEnv

    batch = config.workers
    run_dir = recorder.run_dir
    guided = config.method == GUIDED_METHOD
    learning_episodes = config.episodes - 1
    agent_config = agent_config_for(config, learning_episodes - (1 if guided else 0), batch)
    vec_env = BatchedEpisodeVecEnv(setup.env, batch)
    agent, _, _ = start_agent(setup, config, recorder, vec_env, agent_config)

    def checkpoint() -> None:
        save_checkpoint(agent, run_dir, {"episodes_done": recorder.count, "random": random_state(agent)})

    def sink(record: dict[str, Any]) -> None:
        if recorder.count >= learning_episodes:  # the last batch's extra episodes
            return
        recorder.record(record, "warm-up" if record.get("exploration") == "random" else "explore")
        if guided and recorder.best is not None and recorder.best["episode"] == recorder.count - 1:
            actions = np.asarray(record["applied_actions"], dtype=np.float32)
            agent.set_elite(setup.env.observations_for(actions), actions)  # type: ignore[attr-defined]

    last_checkpoint = recorder.count
    while recorder.count < learning_episodes:
        learn_episodes(agent, batch, callback=EpisodeRecorder(sink=sink, keep=False))
        if recorder.count - last_checkpoint >= config.checkpoint_every or recorder.count >= learning_episodes:
            checkpoint()
            last_checkpoint = recorder.count
    if recorder.count < config.episodes:
        recorder.record(_deterministic_rollout(setup.env, agent), "final")
        checkpoint()
