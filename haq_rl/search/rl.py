"""The RL driver: one SB3 agent over ``workers`` copies of the env, checkpointed for ``--resume``.

One driver for every agent and every number of workers, as SB3's one ``learn`` loop
serves any ``num_envs``: the agent steps a
:class:`~haq_rl.search.vec_env.BatchedEpisodeVecEnv` of ``workers`` copies (one copy
when ``workers`` is 1), whose episodes end together and are evaluated as one batch.
A method's own settings and hooks come from its row of the methods table
(``agent_defaults``, and ``callback``: an :class:`~haq_rl.search.hooks.AgentHooks`, e.g.
the guided agent's anchor and elite), so the driver never asks which method it runs; the
checkpoint is taken at the start of a rollout (after the previous one's update).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from stable_baselines3.common.callbacks import BaseCallback, CallbackList

from haq_rl.errors import ConfigError
from haq_rl.run.layout import AGENT_FILE, REPLAY_FILE
from haq_rl.search.checkpoint import read_checkpoint, save_checkpoint
from haq_rl.search.config import SearchConfig
from haq_rl.search.hooks import AgentHooks
from haq_rl.search.recorder import Recorder
from haq_rl.search.sb3_logger import sb3_logger
from haq_rl.search.setup import SearchSetup

if TYPE_CHECKING:  # SB3 is imported lazily
    from haq_rl.agent import AgentConfig

logger = logging.getLogger(__name__)


def search_rl(setup: SearchSetup, config: SearchConfig, recorder: Recorder) -> None:
    """HAQ's agent: ``episodes - 1`` learning episodes, then one noise-free rollout.

    ``workers`` episodes run per agent update, evaluated together; the last batch may run
    past the learning episodes (its extra episodes are evaluated, not recorded) and the
    warm-up is rounded up to whole batches.

    Every ``checkpoint_every`` episodes (at the first rollout start past each multiple) the
    agent (agent.pt, actor.pt), its replay buffer, the episode count and the random streams
    (search_state.json) are saved together; ``--resume`` drops the episodes.csv rows after
    the last checkpoint and continues from it: the finished run holds exactly ``episodes``
    rows, the same rows an uninterrupted run with as many workers writes.

    A budget-conditioned env (``budgets``) trains one agent for every budget: learning
    episode ``k`` runs under the budget the task's schedule gives it (shown to the agent as
    an observation feature), whichever worker runs it, and the run ends with one
    noise-free rollout per budget. The method's hooks (its row's ``callback``) may record
    episodes of their own first (the guided agent's integer-program policy of every budget).
    """
    from haq_rl.agent import EpisodeRecorder, learn_episodes, random_state
    from haq_rl.search.vec_env import BatchedEpisodeVecEnv

    env = setup.agent_env
    run_dir = recorder.run_dir
    budgets = setup.budgets.budgets  # the scorer's own budget when not conditioned
    hooks: AgentHooks = config.entry.agent_hooks()(setup, config, recorder)
    warm_starts = hooks.warm_starts()  # episodes the hooks record before learning (HAQ's agent: none)
    learning_episodes = config.episodes - len(budgets)
    if env.conditioned and learning_episodes - warm_starts < 1:
        raise ConfigError(f"episodes={config.episodes} is too few for {len(budgets)} budgets with method "
                          f"{config.method}: give at least {len(budgets) + warm_starts + 1}")
    vec_env = BatchedEpisodeVecEnv(env, config.workers)
    agent_config = agent_config_for(config, learning_episodes - warm_starts, len(budgets), config.workers)
    agent = start_agent(recorder, vec_env, agent_config, hooks)

    def save() -> None:  # atomic: a kill inside it leaves the previous checkpoint whole
        save_checkpoint(agent, run_dir, {"episodes_done": recorder.count, "random": random_state(agent),
                                         **hooks.state()})

    def sink(record: dict[str, Any]) -> None:
        if recorder.count < learning_episodes:  # else one of the last batch's extra episodes
            recorder.record(record, "warm-up" if record.get("exploration") == "random" else "explore")

    checkpoint = CheckpointCallback(save, lambda: recorder.count, config.checkpoint_every)
    # In this order: an episode is recorded before the hooks look at it (the guided elite),
    # and a rollout's settings (the guided anchors) are set before the checkpoint saves the agent.
    callbacks: list[BaseCallback] = [EpisodeRecorder(sink=sink, keep=False), hooks]
    remaining = learning_episodes - min(recorder.count, learning_episodes)
    if remaining > 0:
        vec_env.start_schedule(config.seed, recorder.count)
        learn_episodes(agent, remaining, callback=CallbackList([*callbacks, checkpoint]))
        checkpoint.save()  # after the last update: what the final rollouts use
    while recorder.count < config.episodes:
        budget = budgets[recorder.count - learning_episodes]
        recorder.record(deterministic_rollout(env, agent, budget if env.conditioned else None), "final")
        checkpoint.save()


class CheckpointCallback(BaseCallback):
    """Saves the search's checkpoint (``save``) at the first rollout start past each multiple
    of ``every`` recorded episodes: every transition of the previous rollout is stored and
    its update is done, so the agent, its replay buffer and the random streams belong to the
    same moment. With one worker that is every ``every`` episodes exactly."""

    def __init__(self, save: Callable[[], None], episodes_done: Callable[[], int], every: int) -> None:
        super().__init__()
        self._save, self._done, self._every = save, episodes_done, every
        self._last = episodes_done()

    def save(self) -> None:
        self._save()
        self._last = self._done()

    def _on_rollout_start(self) -> None:
        if self._done() // self._every > self._last // self._every:
            self.save()

    def _on_step(self) -> bool:
        return True


def start_agent(recorder: Recorder, env: Any, agent_config: AgentConfig, hooks: AgentHooks) -> Any:
    """The agent of the last checkpoint (its rows after it dropped, its random streams and
    the hooks' state restored) or a new one (started by the hooks), logging to sb3_logs."""
    from haq_rl.agent import load_agent, make_agent, restore_random_state

    run_dir = recorder.run_dir
    state = read_checkpoint(run_dir)
    done = int(state["episodes_done"]) if state else 0
    if recorder.count != done:  # rows written after the last checkpoint are redone (fewer: refused before)
        recorder.log.truncate(done)
        recorder.reset_from_log()
    if state is not None and done > 0:
        # Its own saved settings: a resume with other --episodes keeps the noise schedule it had.
        agent = load_agent(run_dir / AGENT_FILE, run_dir / REPLAY_FILE, env)
        if "random" in state:  # SB3's load reseeded them
            restore_random_state(agent, state["random"])
        hooks.restore(state)
        logger.info("resumed %s after %d episodes", run_dir, done)
    else:
        agent = make_agent(env, agent_config)
        hooks.start(agent)
    agent.set_logger(sb3_logger(run_dir / "sb3_logs"))
    return agent


def agent_config_for(config: SearchConfig, learning_episodes: int, budget_count: int, batch: int) -> AgentConfig:
    """:func:`_agent_config` for ``batch`` episodes per update: the warm-up rounded up to whole
    batches, so no batch mixes random and policy episodes."""
    agent_config = _agent_config(config, learning_episodes, budget_count)
    rounded = -(-agent_config.warmup_episodes // batch) * batch
    if rounded == agent_config.warmup_episodes:
        return agent_config
    logger.info("warm-up of %d episodes rounded up to %d (batches of %d)", agent_config.warmup_episodes,
                rounded, batch)
    return _agent_config(dataclasses.replace(config, agent={**config.agent, "warmup_episodes": rounded}),
                         learning_episodes)


def _agent_config(config: SearchConfig, learning_episodes: int, budget_count: int = 1) -> AgentConfig:
    """HAQ's agent settings, with the noise decay fitted to the run's length.

    Unless ``noise_decay`` is set explicitly, the exploration noise follows HAQ's
    600-episode schedule compressed into this run (:func:`run_length_decay`): with HAQ's
    literal 0.99 a 80-episode run would end still exploring at half its start std.
    A conditioned run of ``budget_count`` budgets warms up as long as that many separate
    runs would (the default warm-up per budget), unless ``warmup_episodes`` is set.
    """
    from haq_rl.agent import AgentConfig, run_length_decay

    defaults = {"algo": config.entry.algo, **config.entry.agent_defaults}  # the method's row
    agent_config = AgentConfig(**{**defaults, "seed": config.seed, **config.agent})
    if budget_count > 1 and "warmup_episodes" not in config.agent:
        agent_config = dataclasses.replace(agent_config, warmup_episodes=agent_config.warmup_episodes * budget_count)
    noisy_episodes = learning_episodes - agent_config.warmup_episodes
    if "noise_decay" in config.agent or "noise_decay" in defaults or noisy_episodes < 1:
        return agent_config
    decay = run_length_decay(noisy_episodes)
    logger.info("noise decay %.4f per episode over %d noisy episodes (HAQ's schedule)", decay, noisy_episodes)
    return dataclasses.replace(agent_config, noise_decay=decay)


def deterministic_rollout(env: Any, agent: Any, budget: float | None = None) -> dict[str, Any]:
    """One episode of the learned actor without exploration noise (at ``budget``, conditioned envs)."""
    observation, _ = env.reset(options=None if budget is None else {"budget": budget})
    info: dict[str, Any] = {}
    terminated = False
    while not terminated:
        action, _ = agent.predict(observation, deterministic=True)
        observation, _, terminated, _, info = env.step(action)
    return info
