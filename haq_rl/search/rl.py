"""The RL driver: one SB3 agent over ``workers`` copies of the env, checkpointed for ``--resume``.

One driver for every agent and every number of workers, as SB3's one ``learn`` loop
serves any ``num_envs``: the agent steps a
:class:`~haq_rl.search.vec_env.BatchedEpisodeVecEnv` of ``workers`` copies (one copy
when ``workers`` is 1), whose episodes end together and are evaluated as one batch.
The guided agent's anchor and elite are hooks of :mod:`haq_rl.search.guided`; the
checkpoint is taken at the start of a rollout (after the previous one's update).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from stable_baselines3.common.callbacks import BaseCallback, CallbackList

from haq_rl.errors import ConfigError
from haq_rl.fileio import atomic_write, check_real_folder, open_regular
from haq_rl.run.layout import AGENT_FILE, REPLAY_FILE
from haq_rl.search.checkpoint import read_checkpoint, save_checkpoint
from haq_rl.search.config import SearchConfig
from haq_rl.search.guided import (
    GUIDED_AGENT_DEFAULTS,
    GUIDED_METHOD,
    GuidedCallback,
    anchor_on_integer_program,
    anchor_sigma,
)
from haq_rl.search.recorder import Recorder
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
    noise-free rollout per budget. The guided agent starts with the integer-program policy
    of every budget, warms up around the one of each episode's budget and imitates the
    best policy of every budget (the elite set).
    """
    from haq_rl.agent import EpisodeRecorder, learn_episodes, random_state
    from haq_rl.search.vec_env import BatchedEpisodeVecEnv

    env = setup.agent_env
    run_dir = recorder.run_dir
    guided = config.method == GUIDED_METHOD
    budgets = setup.budgets.budgets  # the scorer's own budget when not conditioned
    # The guided agent's first episodes are the integer-program policies; HAQ's has none.
    warm_starts = len(budgets) if guided else 0
    learning_episodes = config.episodes - len(budgets)
    if env.conditioned and learning_episodes - warm_starts < 1:
        raise ConfigError(f"episodes={config.episodes} is too few for {len(budgets)} budgets with method "
                          f"{config.method}: give at least {len(budgets) + warm_starts + 1}")
    vec_env = BatchedEpisodeVecEnv(env, config.workers)
    agent_config = agent_config_for(config, learning_episodes - warm_starts, len(budgets), config.workers)
    agent, anchors = start_agent(setup, config, recorder, vec_env, agent_config, budgets)

    def save() -> None:  # atomic: a kill inside it leaves the previous checkpoint whole
        save_checkpoint(agent, run_dir, {"episodes_done": recorder.count, "random": random_state(agent),
                                         **({"anchors": [[b, a.tolist()] for b, a in anchors.items()]}
                                            if env.conditioned else {})})

    def sink(record: dict[str, Any]) -> None:
        if recorder.count < learning_episodes:  # else one of the last batch's extra episodes
            recorder.record(record, "warm-up" if record.get("exploration") == "random" else "explore")

    checkpoint = CheckpointCallback(save, lambda: recorder.count, config.checkpoint_every)
    # In this order: an episode is recorded before the elite looks at it, and a rollout's
    # anchors are set before the checkpoint saves the agent.
    callbacks: list[BaseCallback] = [EpisodeRecorder(sink=sink, keep=False)]
    if guided:
        callbacks.append(GuidedCallback(env, recorder, budgets, anchors, config.seed, config.workers))
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


def start_agent(setup: SearchSetup, config: SearchConfig, recorder: Recorder, env: Any, agent_config: AgentConfig,
                budgets: tuple[float, ...]) -> tuple[Any, dict[float, np.ndarray]]:
    """The agent of the last checkpoint (its rows after it dropped, its random streams
    restored) or a new one (anchored for ``guided`` at each of ``budgets``), logging to
    sb3_logs; with the guided anchors per budget."""
    from haq_rl.agent import load_agent, make_agent, restore_random_state

    run_dir = recorder.run_dir
    state = read_checkpoint(run_dir)
    done = int(state["episodes_done"]) if state else 0
    if recorder.count != done:  # rows written after the last checkpoint are redone (fewer: refused before)
        recorder.log.truncate(done)
        recorder.reset_from_log()
    anchors: dict[float, np.ndarray] = {float(b): np.asarray(a, dtype=np.float32)
                                        for b, a in (state or {}).get("anchors", [])}
    if state is not None and done > 0:
        # Its own saved settings: a resume with other --episodes keeps the noise schedule it had.
        agent = load_agent(run_dir / AGENT_FILE, run_dir / REPLAY_FILE, env)
        if "random" in state:  # SB3's load reseeded them
            restore_random_state(agent, state["random"])
        logger.info("resumed %s after %d episodes", run_dir, done)
    else:
        agent = make_agent(env, agent_config)
        if config.method == GUIDED_METHOD:
            anchors = anchor_on_integer_program(setup, config, recorder, agent, budgets)
            # Until the driver sets each episode's own (conditioned runs): the first budget's.
            agent.set_anchor(anchors[budgets[0]], sigma=anchor_sigma(config))  # type: ignore[attr-defined]
    agent.set_logger(_sb3_logger(run_dir / "sb3_logs"))
    return agent, anchors


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

    defaults = GUIDED_AGENT_DEFAULTS if config.method == GUIDED_METHOD else {"algo": config.method}
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


def _sb3_logger(folder: Path) -> Any:
    """SB3's logger of the run: a resumed run appends to sb3_logs/progress.csv (SB3's own
    CSV writer starts it afresh), after cutting a torn last line a kill left."""
    from stable_baselines3.common.logger import CSVOutputFormat, Logger, configure

    class AppendingCSV(CSVOutputFormat):
        def __init__(self, filename: str) -> None:
            path = Path(filename)
            # Never through a link, never a FIFO: a copied run directory may hold either.
            with open_regular(path, "ab+") as stream:
                stream.seek(0)
                data = stream.read()
            if data and not data.endswith(b"\n"):
                data = data[: data.rfind(b"\n") + 1]
                whole = data  # the lines before the torn one
                atomic_write(path, lambda stream: stream.write(whole))
            # SB3 rewrites the header in place when keys are added: "r+", not append-only.
            self.file = open_regular(path, "r+", encoding="utf-8", errors="replace")
            self.file.seek(0, 2)
            self.keys = data.decode(errors="replace").split("\n", 1)[0].split(",") if data else []
            self.separator = ","
            self.quotechar = '"'

    check_real_folder(folder)  # a linked sb3_logs/ would put the logs outside the run
    folder.mkdir(parents=True, exist_ok=True)
    others = [name for name in _logger_formats() if name != "csv"]
    base = configure(str(folder), others) if others else Logger(str(folder), [])
    return Logger(str(folder), [*base.output_formats, AppendingCSV(str(folder / "progress.csv"))])


def _logger_formats() -> list[str]:
    """SB3 logs as CSV always, and as TensorBoard events when tensorboard is installed."""
    try:
        import tensorboard  # noqa: F401
    except ImportError:
        return ["csv"]
    return ["csv", "tensorboard"]


