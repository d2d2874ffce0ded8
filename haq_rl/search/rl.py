"""HAQ's RL driver: an SB3 agent learns episode by episode, checkpointed for ``--resume``."""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from haq_rl.env.budgets import scheduled_budget
from haq_rl.errors import ConfigError
from haq_rl.fileio import atomic_write
from haq_rl.run.layout import AGENT_FILE, REPLAY_FILE, SENSITIVITY_FILE
from haq_rl.search.checkpoint import read_checkpoint, save_checkpoint
from haq_rl.search.config import SearchConfig
from haq_rl.search.recorder import Recorder
from haq_rl.search.setup import SearchSetup

if TYPE_CHECKING:  # SB3 is imported lazily
    from haq_rl.agent import AgentConfig

logger = logging.getLogger(__name__)

#: The guided agent: HAQ's DDPG anchored on the integer-program policy (see search_rl).
GUIDED_METHOD = "guided"
#: Its agent settings where they differ from HAQ's: a shorter warm-up around the anchor
#: and exploration noise of about a third of a bit bin instead of HAQ's half range.
GUIDED_AGENT_DEFAULTS: dict[str, Any] = {"algo": "ddpg", "warmup_episodes": 10, "noise_sigma": 0.04,
                                          "noise_decay": 1.0}


def search_rl(setup: SearchSetup, config: SearchConfig, recorder: Recorder) -> None:
    """HAQ's agent: ``episodes - 1`` learning episodes, then one noise-free rollout.

    Every ``checkpoint_every`` episodes the agent (agent.pt, actor.pt), its replay buffer, the
    episode count and the random streams (search_state.json) are saved together, at the
    start of an episode (after the previous episode's update); ``--resume`` drops the
    episodes.csv rows after the last checkpoint and continues from it: the finished run
    holds exactly ``episodes`` rows, the same rows an uninterrupted run writes.

    A budget-conditioned env (``budgets``) trains one agent for every budget: each
    learning episode runs under the budget the env's schedule gives it (shown to the
    agent as an observation feature), and the run ends with one noise-free rollout per
    budget. The guided agent starts with the integer-program policy of every budget,
    warms up around the one of each episode's budget and imitates the best policy of
    every budget (the elite set).
    """
    if config.workers > 1:  # several episodes per update, evaluated together
        from haq_rl.search.rl_batched import search_rl_batched

        return search_rl_batched(setup, config, recorder)
    from stable_baselines3.common.callbacks import CallbackList

    from haq_rl.agent import EpisodeRecorder, RolloutStartCallback, learn_episodes, random_state

    env = setup.env
    run_dir = recorder.run_dir
    guided = config.method == GUIDED_METHOD
    budgets = env.budgets if env.conditioned else (env.scorer.budget_ratio,)
    # The guided agent's first episodes are the integer-program policies; HAQ's has none.
    warm_starts = len(budgets) if guided else 0
    learning_episodes = config.episodes - len(budgets)
    if env.conditioned and learning_episodes - warm_starts < 1:
        raise ConfigError(f"episodes={config.episodes} is too few for {len(budgets)} budgets with method "
                          f"{config.method}: give at least {len(budgets) + warm_starts + 1}")
    agent_config = _agent_config(config, learning_episodes - warm_starts, len(budgets))
    agent, _, anchors = start_agent(setup, config, recorder, env, agent_config, budgets)

    def checkpoint() -> None:  # atomic: a kill inside it leaves the previous checkpoint whole
        save_checkpoint(agent, run_dir, {"episodes_done": recorder.count, "random": random_state(agent),
                                         **({"anchors": [[b, a.tolist()] for b, a in anchors.items()]}
                                            if env.conditioned else {})})

    started_at = recorder.count

    def checkpoint_at_episode_start() -> None:
        # Every transition of the previous episode is stored and its update is done.
        if recorder.count != started_at and recorder.count % config.checkpoint_every == 0:
            checkpoint()

    def next_anchor() -> None:
        # The warm-up samples around the anchor of the budget the next episode runs under.
        if env.conditioned and anchors:
            budget = scheduled_budget(env.budgets, env.schedule_seed, recorder.count)
            agent.set_anchor(anchors[budget], sigma=agent.anchor_sigma)

    def sink(record: dict[str, Any]) -> None:
        if recorder.count >= learning_episodes:
            return
        improved = recorder.record(record, "warm-up" if record.get("exploration") == "random" else "explore")
        if guided and improved:
            # A new best: the actor now imitates it (self-imitation of the elite).
            agent.set_elite(*_elite(env, recorder, budgets))  # type: ignore[attr-defined]
        next_anchor()

    remaining = learning_episodes - min(recorder.count, learning_episodes)
    if remaining > 0:
        env.schedule_seed = config.seed
        env.episode_index = recorder.count  # the schedule's budget of the next episode
        next_anchor()
        learn_episodes(agent, remaining, callback=CallbackList([
            RolloutStartCallback(checkpoint_at_episode_start), EpisodeRecorder(sink=sink, keep=False)]))
        checkpoint()  # after the last update: what the final rollouts use
    while recorder.count < config.episodes:
        budget = budgets[recorder.count - learning_episodes]
        recorder.record(_deterministic_rollout(env, agent, budget if env.conditioned else None), "final")
        checkpoint()


def _elite(env: Any, recorder: Recorder, budgets: tuple[float, ...]) -> tuple[np.ndarray, np.ndarray]:
    """Observations and actions of the best policy of every budget that has one, stacked."""
    observations, actions = [], []
    for budget in budgets:
        best = recorder.best_by_budget.get(budget)
        if best is None:
            continue
        best_actions = env.policy_actions(best["w_bits"], best["a_bits"])
        observations.append(env.observations_for(best_actions, budget=budget if env.conditioned else None))
        actions.append(best_actions)
    return np.concatenate(observations), np.concatenate(actions)


def start_agent(setup: SearchSetup, config: SearchConfig, recorder: Recorder, env: Any, agent_config: AgentConfig,
                budgets: tuple[float, ...] | None = None) -> tuple[Any, dict[str, Any] | None, dict[float, np.ndarray]]:
    """The agent of the last checkpoint (its rows after it dropped, its random streams
    restored) or a new one (anchored for ``guided`` at each of ``budgets``, default the
    scorer's), logging to sb3_logs; with the checkpoint's state (None for a new run) and
    the guided anchors per budget."""
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
            anchors = _anchor_on_integer_program(setup, config, recorder, agent,
                                                 budgets or (setup.scorer.budget_ratio,))
    agent.set_logger(_sb3_logger(run_dir / "sb3_logs"))
    return agent, state, anchors


def _anchor_on_integer_program(setup: SearchSetup, config: SearchConfig, recorder: Recorder, agent: Any,
                               budgets: tuple[float, ...]) -> dict[float, np.ndarray]:
    """The guided agent's first episodes: the sensitivity integer program's policy at each budget.

    Their actions become the agent's anchors: the warm-up explores around the anchor of
    each episode's budget, and the actor is fitted to reproduce them before any
    reinforcement-learning update. Returns budget -> anchor actions.
    """
    from haq_rl.search.hawq import (
        integer_program_policy,
        sensitivity_settings,
        task_sensitivity,
        write_sensitivity,
    )

    options = config.method_options()
    _, _, tied = sensitivity_settings(options)
    sigma = options["anchor_sigma"]
    env = setup.env
    sensitivity = task_sensitivity(setup, options, config.seed, progress=config.progress)
    write_sensitivity(recorder.run_dir / SENSITIVITY_FILE, sensitivity)
    anchors: dict[float, np.ndarray] = {}
    for budget in budgets:
        scorer = env.scorer_at(budget) if env.conditioned else setup.scorer
        w_bits, a_bits = integer_program_policy(scorer, sensitivity, tied=tied)
        actions = env.policy_actions(w_bits, a_bits)
        env.reset(seed=config.seed, options={"budget": budget} if env.conditioned else None)
        info: dict[str, Any] = {}
        for action in actions:
            _, _, _, _, info = env.step(action)
        recorder.record(info, "warm-start")
        anchors[budget] = actions
        logger.info("guided agent: integer-program policy at budget %g: %.2f%% at cost ratio %.3f",
                    budget, info["accuracy"], info["cost_ratio"])
    first = scheduled_budget(env.budgets, config.seed, recorder.count) if env.conditioned else budgets[0]
    agent.set_anchor(anchors[first], sigma=2.0 * float(sigma))  # HAQ units -> SB3's [-1, 1]
    observations = np.concatenate([env.observations_for(anchors[b], budget=b if env.conditioned else None)
                                   for b in budgets])
    error = agent.imitate(observations, np.concatenate([anchors[b] for b in budgets]), sync_target=True)
    agent.set_elite(*_elite(env, recorder, budgets), imitation_steps=int(options["imitation_steps"]))
    logger.info("guided agent: actor fitted to the integer-program policies (mse %.2g)", error)
    return anchors


def agent_config_for(config: SearchConfig, learning_episodes: int, batch: int) -> AgentConfig:
    """:func:`_agent_config` for ``batch`` episodes per update: the warm-up rounded up to whole
    batches, so no batch mixes random and policy episodes."""
    agent_config = _agent_config(config, learning_episodes)
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


def _deterministic_rollout(env: Any, agent: Any, budget: float | None = None) -> dict[str, Any]:
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
            data = path.read_bytes() if path.is_file() else b""
            if data and not data.endswith(b"\n"):
                data = data[: data.rfind(b"\n") + 1]
                whole = data  # the lines before the torn one
                atomic_write(path, lambda stream: stream.write(whole))
            if not data:
                super().__init__(filename)
                return
            self.file = open(filename, "r+")  # SB3 rewrites the header in place when keys are added
            self.file.seek(0, 2)
            self.keys = data.decode(errors="replace").split("\n", 1)[0].split(",")
            self.separator = ","
            self.quotechar = '"'

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


