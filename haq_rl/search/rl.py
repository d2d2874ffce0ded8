"""HAQ's RL driver: an SB3 agent learns episode by episode, checkpointed for ``--resume``."""

from __future__ import annotations

import dataclasses
import logging
from typing import TYPE_CHECKING, Any

import numpy as np

from haq_rl.run.layout import AGENT_FILE, REPLAY_FILE, SENSITIVITY_FILE
from haq_rl.search.checkpoint import read_checkpoint, save_checkpoint
from haq_rl.search.harness import Recorder, SearchConfig, SearchSetup

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

    Every ``checkpoint_every`` episodes the agent (agent.zip), its replay buffer and the
    episode count (search_state.json) are saved together; ``--resume`` drops the
    episodes.csv rows after the last checkpoint and continues from it, so the finished
    run holds exactly ``episodes`` rows with no duplicate.
    """
    if config.workers > 1:  # several episodes per update, evaluated together
        from haq_rl.search.rl_batched import search_rl_batched

        return search_rl_batched(setup, config, recorder)
    from haq_rl.agent import EpisodeRecorder, learn_episodes

    env = setup.env
    run_dir = recorder.run_dir
    guided = config.method == GUIDED_METHOD
    # The guided agent's first episode is the integer-program policy; HAQ's has none.
    learning_episodes = config.episodes - 1
    agent_config = _agent_config(config, learning_episodes - (1 if guided else 0))
    agent, _ = start_agent(setup, config, recorder, env, agent_config)

    def checkpoint() -> None:  # atomic: a kill inside it leaves the previous checkpoint whole
        save_checkpoint(agent, run_dir, {"episodes_done": recorder.count})

    def sink(record: dict[str, Any]) -> None:
        if recorder.count >= learning_episodes:
            return
        recorder.record(record, "warm-up" if record.get("exploration") == "random" else "explore")
        if guided and recorder.best is not None and recorder.best["episode"] == recorder.count - 1:
            # A new best: the actor now imitates it (self-imitation of the elite).
            actions = np.asarray(record["applied_actions"], dtype=np.float32)
            agent.set_elite(env.observations_for(actions), actions)  # type: ignore[attr-defined]
        if recorder.count % config.checkpoint_every == 0 or recorder.count == learning_episodes:
            checkpoint()

    remaining = learning_episodes - min(recorder.count, learning_episodes)
    if remaining > 0:
        learn_episodes(agent, remaining, callback=EpisodeRecorder(sink=sink, keep=False))
    if recorder.count < config.episodes:
        recorder.record(_deterministic_rollout(env, agent), "final")
        checkpoint()


def start_agent(setup: SearchSetup, config: SearchConfig, recorder: Recorder, env: Any,
                agent_config: AgentConfig) -> tuple[Any, dict[str, Any] | None]:
    """The agent of the last checkpoint (its rows after it dropped) or a new one (anchored for
    ``guided``), logging to sb3_logs; with the checkpoint's state (None for a new run)."""
    from stable_baselines3.common.logger import configure

    from haq_rl.agent import load_agent, make_agent

    run_dir = recorder.run_dir
    state = read_checkpoint(run_dir)
    done = int(state["episodes_done"]) if state else 0
    if recorder.count != done:  # rows written after the last checkpoint are redone
        recorder.log.truncate(done)
        recorder.reset_from_log()
    if done > 0:
        agent = load_agent(run_dir / AGENT_FILE, run_dir / REPLAY_FILE, env, agent_config)
        logger.info("resumed %s after %d episodes", run_dir, done)
    else:
        agent = make_agent(env, agent_config)
        if config.method == GUIDED_METHOD:
            _anchor_on_integer_program(setup, config, recorder, agent)
    agent.set_logger(configure(str(run_dir / "sb3_logs"), _logger_formats()))
    return agent, state


def _anchor_on_integer_program(setup: SearchSetup, config: SearchConfig, recorder: Recorder, agent: Any) -> None:
    """Episode 0 of the guided agent: the sensitivity integer program's policy.

    Its actions become the agent's anchor: the warm-up explores around them, and the
    actor is fitted to reproduce them before any reinforcement-learning update.
    """
    from haq_rl.search.hawq import (
        integer_program_policy,
        measure_sensitivity,
        sensitivity_settings,
        write_sensitivity,
    )

    options = config.method_options()
    probes, images, tied = sensitivity_settings(options)
    sigma = options["anchor_sigma"]
    env = setup.env
    sensitivity = measure_sensitivity(setup, probes, images, config.seed)
    write_sensitivity(recorder.run_dir / SENSITIVITY_FILE, sensitivity)
    w_bits, a_bits = integer_program_policy(setup.scorer, sensitivity, tied=tied)
    actions = env.policy_actions(w_bits, a_bits)
    env.reset(seed=config.seed)
    info: dict[str, Any] = {}
    for action in actions:
        _, _, _, _, info = env.step(action)
    recorder.record(info, "warm-start")
    agent.set_anchor(actions, sigma=2.0 * float(sigma))  # HAQ units -> SB3's [-1, 1]
    observations = env.observations_for(actions)
    error = agent.imitate(observations, actions, sync_target=True)
    agent.set_elite(observations, actions, imitation_steps=int(options["imitation_steps"]))
    logger.info("guided agent: integer-program policy %.2f%% at cost ratio %.3f; actor fitted (mse %.2g)",
                info["accuracy"], info["cost_ratio"], error)


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


def _agent_config(config: SearchConfig, learning_episodes: int) -> AgentConfig:
    """HAQ's agent settings, with the noise decay fitted to the run's length.

    Unless ``noise_decay`` is set explicitly, the exploration noise follows HAQ's
    600-episode schedule compressed into this run (:func:`run_length_decay`): with HAQ's
    literal 0.99 a 80-episode run would end still exploring at half its start std.
    """
    from haq_rl.agent import AgentConfig, run_length_decay

    defaults = GUIDED_AGENT_DEFAULTS if config.method == GUIDED_METHOD else {"algo": config.method}
    agent_config = AgentConfig(**{**defaults, "seed": config.seed, **config.agent})
    noisy_episodes = learning_episodes - agent_config.warmup_episodes
    if "noise_decay" in config.agent or "noise_decay" in defaults or noisy_episodes < 1:
        return agent_config
    decay = run_length_decay(noisy_episodes)
    logger.info("noise decay %.4f per episode over %d noisy episodes (HAQ's schedule)", decay, noisy_episodes)
    return dataclasses.replace(agent_config, noise_decay=decay)


def _deterministic_rollout(env: Any, agent: Any) -> dict[str, Any]:
    """One episode of the learned actor without exploration noise."""
    observation, _ = env.reset()
    info: dict[str, Any] = {}
    terminated = False
    while not terminated:
        action, _ = agent.predict(observation, deterministic=True)
        observation, _, terminated, _, info = env.step(action)
    return info


def _logger_formats() -> list[str]:
    """SB3 logs as CSV always, and as TensorBoard events when tensorboard is installed."""
    try:
        import tensorboard  # noqa: F401
    except ImportError:
        return ["csv"]
    return ["csv", "tensorboard"]


