"""Build the agent for an environment and train it for a number of episodes."""

from __future__ import annotations

import logging
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.off_policy_algorithm import OffPolicyAlgorithm
from stable_baselines3.common.type_aliases import MaybeCallback
from stable_baselines3.common.vec_env import VecEnv

from haq_rl.agent.algos import ALGO_CLASSES, HaqAlgorithmMixin
from haq_rl.agent.config import AgentConfig
from haq_rl.agent.noise import TruncatedNormalNoise
from haq_rl.agent.replay import EpisodeRewardReplayBuffer
from haq_rl.errors import ConfigError, check_integer

logger = logging.getLogger(__name__)

#: Attributes of the (unwrapped) env that may hold the fixed episode length T.
EPISODE_LENGTH_ATTRS: tuple[str, ...] = (
    "steps_per_episode",
    "episode_length",
    "num_steps",
    "n_steps",
)


def episode_length(env: gym.Env | VecEnv, steps_per_episode: int | None = None) -> int:
    """The fixed episode length T of ``env``.

    Looked up, in order: the explicit ``steps_per_episode``; the unwrapped env's
    ``steps_per_episode`` (QuantizationEnv), ``episode_length``, ``num_steps`` or
    ``n_steps`` attribute; ``env.spec.max_episode_steps``.
    No episode is run to measure it: a step of the real env costs an accuracy evaluation.
    """
    if steps_per_episode is not None:
        return check_integer("steps_per_episode", steps_per_episode, 1)
    for name in EPISODE_LENGTH_ATTRS:
        value = _env_attr(env, name)
        if isinstance(value, int | np.integer) and not isinstance(value, bool) and value >= 1:
            return int(value)
    spec = _env_attr(env, "spec")
    max_steps = getattr(spec, "max_episode_steps", None)
    if isinstance(max_steps, int) and max_steps >= 1:
        return max_steps
    raise ConfigError(
        "cannot tell the episode length of the environment: pass steps_per_episode=T or give "
        f"the env one of the attributes {', '.join(EPISODE_LENGTH_ATTRS)}"
    )


def _env_attr(env: gym.Env | VecEnv, name: str) -> Any:
    if isinstance(env, VecEnv):
        try:
            return env.get_attr(name, indices=[0])[0]
        except AttributeError:
            return None
    if name == "spec":
        return getattr(env, "spec", None)
    return getattr(env.unwrapped, name, None)


def make_agent(
    env: gym.Env | VecEnv,
    config: AgentConfig | None = None,
    *,
    steps_per_episode: int | None = None,
    verbose: int = 0,
    tensorboard_log: str | None = None,
) -> OffPolicyAlgorithm:
    """Build HAQ's agent (or TD3/SAC with the same settings) for ``env``.

    The env must have a ``Box`` action space (HAQ: ``Box(-1, 1, (d,))``), a fixed
    episode length T (see :func:`episode_length`) and pay its reward at the last step.
    SB3 seeds python, numpy, torch, the action space and the env's first reset with
    ``config.seed``; the exploration noise has its own generator seeded the same way.

    Returns an SB3 algorithm (:class:`~haq_rl.agent.algos.HaqDDPG`, ``HaqTD3`` or
    ``HaqSAC``); train it with :func:`learn_episodes`, save it with ``model.save()``.
    """
    config = config or AgentConfig()
    if not isinstance(env.action_space, spaces.Box) or len(env.action_space.shape) != 1:
        raise ConfigError(f"the agent needs a 1-D Box action space, got {env.action_space}")
    horizon = episode_length(env, steps_per_episode)
    action_dim = int(env.action_space.shape[0])
    hidden = list(config.hidden_sizes)
    kwargs: dict[str, Any] = dict(
        policy="MlpPolicy",
        env=env,
        # SB3's single learning_rate only seeds the schedule; the mixin applies the two rates.
        learning_rate=config.lr_critic,
        lr_actor=config.lr_actor,
        lr_critic=config.lr_critic,
        steps_per_episode=horizon,
        buffer_size=config.replay_episodes * horizon,
        # SB3 acts uniformly at random while num_timesteps < learning_starts: HAQ's warm-up.
        learning_starts=config.warmup_episodes * horizon,
        batch_size=config.batch_size,
        tau=config.tau,
        gamma=config.gamma,
        # HAQ updates after each episode, once per step of it (gradient_steps=-1 means T). SB3
        # counts whole episodes of one env only; n synchronous envs end n episodes every T steps,
        # and -1 then means n * T gradient steps, still T per episode.
        train_freq=(horizon, "step") if isinstance(env, VecEnv) and env.num_envs > 1 else (1, "episode"),
        gradient_steps=config.gradient_steps_per_episode or -1,
        replay_buffer_class=EpisodeRewardReplayBuffer,
        replay_buffer_kwargs=dict(baseline_decay=config.baseline_decay),
        policy_kwargs=dict(net_arch=dict(pi=hidden, qf=hidden)),
        seed=config.seed,
        device=config.device,
        verbose=verbose,
        tensorboard_log=tensorboard_log,
    )
    if config.algo in ("ddpg", "td3"):
        # noise_sigma is in HAQ's [0, 1] action units; SB3 acts in [-1, 1], twice as wide.
        kwargs["action_noise"] = TruncatedNormalNoise(
            action_dim,
            sigma=2.0 * config.noise_sigma,
            decay=config.noise_decay,
            warmup_episodes=config.warmup_episodes,
            seed=config.seed,
        )
    model = ALGO_CLASSES[config.algo](**kwargs)
    model.haq_config = config  # what save_agent records, so a loaded agent is rebuilt the same way
    logger.info(
        "built %s agent: T=%d, action_dim=%d, replay=%d, warm-up=%d steps",
        config.algo,
        horizon,
        action_dim,
        kwargs["buffer_size"],
        kwargs["learning_starts"],
    )
    return model  # type: ignore[return-value]


def learn_episodes(
    model: BaseAlgorithm,
    episodes: int,
    *,
    callback: MaybeCallback = None,
    steps_per_episode: int | None = None,
    progress_bar: bool = False,
    log_interval: int | None = None,
) -> BaseAlgorithm:
    """Train ``model`` for exactly ``episodes`` more episodes (``episodes * T`` steps).

    Repeated calls continue the same run (``reset_num_timesteps=False`` after the first
    call): no second warm-up, the environment is not reset mid-episode and the noise
    keeps decaying. ``steps_per_episode`` defaults to the T ``make_agent`` found.
    """
    check_integer("episodes", episodes, 0)
    horizon = steps_per_episode
    if horizon is None and isinstance(model, HaqAlgorithmMixin):
        horizon = model.steps_per_episode
    if horizon is None:
        raise ConfigError("steps_per_episode is unknown: pass it to learn_episodes")
    if episodes == 0:
        return model
    first_call = model.num_timesteps == 0
    kwargs: dict[str, Any] = {}
    if log_interval is not None:
        kwargs["log_interval"] = log_interval
    return model.learn(
        total_timesteps=episodes * horizon,
        callback=callback,
        reset_num_timesteps=first_call,
        progress_bar=progress_bar,
        **kwargs,
    )
