"""HAQ's replay handling of episode-final rewards.

The quantization environment pays its whole reward at the last step of an episode.
HAQ (``rl_quantize.py: train``) therefore keeps an episode's transitions aside and, when
the episode ends, stores every one of them with the episode's final reward; at update
time (``lib/rl/ddpg.py: update_policy``) it subtracts a moving-average baseline of the
sampled batch's mean reward (``moving_alpha = 0.5``) from the batch rewards.
:class:`EpisodeRewardReplayBuffer` does both inside an SB3 ``ReplayBuffer``.

Critic targets stay finite with gamma = 1: only the last transition of an episode is
stored with ``done = True``, so SB3's target ``r + (1 - done) * gamma * Q'(s', a')``
bootstraps exactly ``T - t - 1`` times and ``Q(s_t, a_t)`` estimates
``(T - t) * (R - b)``, as in HAQ.

HAQ's off-policy mismatch fix: when the environment's budget wall lowered the proposed
bits, the environment reports the actions of the bits it actually applied in
``info["applied_actions"]`` and those are stored instead of the proposed actions.
"""

from __future__ import annotations

import logging
from typing import Any, NamedTuple

import numpy as np
import torch
from gymnasium import spaces
from stable_baselines3.common.buffers import ReplayBuffer
from stable_baselines3.common.type_aliases import ReplayBufferSamples
from stable_baselines3.common.vec_env import VecNormalize

from haq_rl.errors import ConfigError

logger = logging.getLogger(__name__)

#: Key of the applied actions in the last step's info (docs/agent.md).
APPLIED_ACTIONS_KEY = "applied_actions"


class _Pending(NamedTuple):
    obs: np.ndarray
    next_obs: np.ndarray
    action: np.ndarray


class EpisodeRewardReplayBuffer(ReplayBuffer):
    """Replay buffer that stores whole episodes with the final reward on every step.

    Transitions passed to :meth:`add` are held back until the episode ends
    (``done``). Then each is written with ``reward = final reward`` (the last step's
    reward), ``done`` only on the last one, and, if the last info carries
    ``"applied_actions"`` (shape ``(T, action_dim)``, env action units), those actions.
    Episodes cut short by a time limit (``TimeLimit.truncated``) have no final reward
    and are dropped. :meth:`sample` subtracts HAQ's moving-average baseline.

    Several environments (``n_envs > 1``) must end their episodes on the same step (a
    fixed episode length, as HAQ's): each env's steps are then stored with its own final
    reward and its own applied actions.

    Args:
        baseline_decay: ``b <- decay * b + (1 - decay) * batch_mean`` at every sample;
            the first sample sets ``b`` to its batch mean (HAQ: decay 0.5).
        use_applied_actions: store ``info["applied_actions"]`` instead of the
            proposed actions when present.
        Other arguments are SB3's ``ReplayBuffer`` arguments.
    """

    def __init__(
        self,
        buffer_size: int,
        observation_space: spaces.Space,
        action_space: spaces.Space,
        device: torch.device | str = "auto",
        n_envs: int = 1,
        optimize_memory_usage: bool = False,
        handle_timeout_termination: bool = True,
        baseline_decay: float = 0.5,
        use_applied_actions: bool = True,
    ) -> None:
        if not 0.0 <= baseline_decay < 1.0:
            raise ConfigError(f"baseline_decay={baseline_decay!r} is out of range [0.0, 1.0)")
        super().__init__(
            buffer_size,
            observation_space,
            action_space,
            device=device,
            n_envs=n_envs,
            optimize_memory_usage=optimize_memory_usage,
            handle_timeout_termination=handle_timeout_termination,
        )
        self.baseline_decay = float(baseline_decay)
        self.use_applied_actions = bool(use_applied_actions)
        self.baseline: float | None = None
        self.episodes_stored = 0
        self.last_episode_reward: float | None = None
        self._pending: list[_Pending] = []

    # ------------------------------------------------------------------ storing
    def add(
        self,
        obs: np.ndarray,
        next_obs: np.ndarray,
        action: np.ndarray,
        reward: np.ndarray,
        done: np.ndarray,
        infos: list[dict[str, Any]],
    ) -> None:
        """Hold the transition back; write the whole episode when it ends."""
        # Copies: SB3 reuses its observation arrays between steps.
        self._pending.append(_Pending(np.array(obs), np.array(next_obs), np.array(action)))
        dones = np.asarray(done).reshape(-1)
        if not dones.any():
            return
        if not dones.all():
            raise ConfigError(f"envs {np.flatnonzero(~dones).tolist()} did not end their episode with the others: "
                              "EpisodeRewardReplayBuffer needs envs whose episodes end on the same step")
        infos = list(infos) if infos else [{} for _ in range(self.n_envs)]
        pending, self._pending = self._pending, []
        if any(info.get("TimeLimit.truncated", False) for info in infos):
            logger.debug(
                "dropping an episode truncated after %d steps (no final reward)", len(pending)
            )
            return
        final_rewards = np.asarray(reward, dtype=np.float32).reshape(-1)  # one per env
        actions = self._episode_actions(pending, infos)
        last = len(pending) - 1
        for i, step in enumerate(pending):
            super().add(
                step.obs,
                step.next_obs,
                actions[i],
                final_rewards.copy(),
                np.full(self.n_envs, i == last),
                # Only the last step's info matters to SB3 (timeout flag); the others
                # were mid-episode steps, never truncated.
                [info if i == last else {} for info in infos],
            )
        self.episodes_stored += self.n_envs
        self.last_episode_reward = float(final_rewards[-1])

    def _episode_actions(self, pending: list[_Pending], infos: list[dict[str, Any]]) -> list[np.ndarray]:
        """Per step, the (n_envs, action_dim) actions to store: each env's applied ones if it has them."""
        actions = [np.array(step.action, dtype=np.float32).reshape(self.n_envs, self.action_dim) for step in pending]
        if not self.use_applied_actions:
            return actions
        for env, info in enumerate(infos):
            applied = info.get(APPLIED_ACTIONS_KEY)
            if applied is None:
                continue
            applied = np.asarray(applied, dtype=np.float32).reshape(-1, self.action_dim)
            if len(applied) != len(pending):
                # E.g. learning started in the middle of an episode: no safe alignment.
                logger.warning(
                    "info[%r] has %d rows but the episode has %d stored steps; keeping proposed actions",
                    APPLIED_ACTIONS_KEY,
                    len(applied),
                    len(pending),
                )
                continue
            for step, row in zip(actions, self._scale(applied), strict=True):
                step[env] = row
        return actions

    def _scale(self, actions: np.ndarray) -> np.ndarray:
        """Env action units -> SB3's [-1, 1] buffer units (identity for Box(-1, 1))."""
        if not isinstance(self.action_space, spaces.Box):
            return actions
        low = self.action_space.low.astype(np.float32)
        high = self.action_space.high.astype(np.float32)
        return np.clip(2.0 * (actions - low) / (high - low) - 1.0, -1.0, 1.0).astype(np.float32)

    def discard_pending(self) -> None:
        """Forget a half-collected episode (the env was reset before it ended)."""
        if self._pending:
            logger.debug("discarding %d transitions of an unfinished episode", len(self._pending))
        self._pending = []

    @property
    def pending_steps(self) -> int:
        """Transitions of the current, unfinished episode."""
        return len(self._pending)

    # ----------------------------------------------------------------- sampling
    def update_baseline(self, batch_mean: float) -> float:
        """Apply HAQ's moving-average update with one batch mean; return the baseline."""
        if self.baseline is None:
            self.baseline = float(batch_mean)
        else:
            self.baseline = self.baseline_decay * self.baseline + (
                1.0 - self.baseline_decay
            ) * float(batch_mean)
        return self.baseline

    def sample(self, batch_size: int, env: VecNormalize | None = None) -> ReplayBufferSamples:
        """Sample a batch whose rewards are ``final reward - baseline``.

        As in HAQ's ``update_policy``, the baseline first moves toward the batch's mean
        raw reward and is then subtracted from every reward of the batch.
        """
        samples = super().sample(batch_size, env=env)
        baseline = self.update_baseline(float(samples.rewards.mean().item()))
        return samples._replace(rewards=samples.rewards - baseline)
