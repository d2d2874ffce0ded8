"""SB3's DDPG / TD3 / SAC with HAQ's learning rates, exploration and replay handling.

Subclasses, not forks: a mixin changes four hooks of SB3's off-policy algorithm.

- Separate actor / critic learning rates (HAQ: 1e-4 / 1e-3). SB3 has one
  ``learning_rate`` and re-applies it to every optimizer at each ``train()`` through
  ``_update_learning_rate``, so setting param groups once would be undone; the mixin
  overrides that hook.
- Exploration (DDPG/TD3): a pure uniform warm-up (SB3 would add the noise to the random
  warm-up actions too), then a truncated normal sample around the actor's action
  (:class:`~haq_rl.agent.noise.TruncatedNormalNoise`), as HAQ's ``select_action``.
- ``learn()`` calls ``action_noise.reset()`` once at its start; that is not an episode,
  so the noise's episode count is restored afterwards (the decay stays per episode).
- A reset of the environment at the start of ``learn()`` discards the replay buffer's
  unfinished episode.
- Optional anchor (:meth:`HaqAlgorithmMixin.set_anchor`, not in HAQ): the warm-up
  samples around a given action sequence (e.g. an integer-program policy) instead of
  uniformly, and :meth:`HaqAlgorithmMixin.imitate` fits the actor to that sequence, so
  learning starts from a known good policy rather than from a random actor.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from stable_baselines3 import DDPG, SAC, TD3
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.noise import ActionNoise, VectorizedActionNoise
from stable_baselines3.common.type_aliases import MaybeCallback
from stable_baselines3.common.utils import update_learning_rate

from haq_rl.agent.noise import TruncatedNormalNoise
from haq_rl.agent.replay import EpisodeRewardReplayBuffer
from haq_rl.errors import ConfigError


class HaqAlgorithmMixin:
    """Adds HAQ's per-network learning rates, noise handling and episode bookkeeping.

    Extra keyword arguments (all optional so that SB3's ``load()`` can rebuild the
    object before restoring the saved attributes):

    Args:
        lr_actor: learning rate of the actor (and of SAC's entropy coefficient).
        lr_critic: learning rate of the critic(s).
        steps_per_episode: the fixed episode length T, kept for ``learn_episodes``.
    """

    # Declared for type checkers; the SB3 base class provides the rest.
    lr_actor: float | None
    lr_critic: float | None
    steps_per_episode: int | None
    action_noise: ActionNoise | None
    #: The AgentConfig make_agent built it from (None for an agent built directly).
    haq_config: Any = None

    def __init__(
        self,
        *args: Any,
        lr_actor: float | None = None,
        lr_critic: float | None = None,
        steps_per_episode: int | None = None,
        **kwargs: Any,
    ) -> None:
        # Set before super().__init__, which builds the optimizers via _setup_model.
        self.lr_actor = lr_actor
        self.lr_critic = lr_critic
        self.steps_per_episode = steps_per_episode
        self.anchor_actions: np.ndarray | None = None
        self.anchor_sigma = 0.0
        self.elite: tuple[np.ndarray, np.ndarray] | None = None
        self.elite_imitation_steps = 0
        super().__init__(*args, **kwargs)

    def set_elite(self, observations: np.ndarray, actions: np.ndarray, imitation_steps: int | None = None) -> None:
        """Self-imitation (Oh et al., ICML 2018): after every ``train()``, pull the actor toward
        the best episode found so far (``imitation_steps`` regression steps on its
        observations and actions; None keeps the current count), so critic updates cannot
        drag it far from that policy."""
        self.elite = (np.asarray(observations, dtype=np.float32), np.asarray(actions, dtype=np.float32))
        if imitation_steps is not None:
            self.elite_imitation_steps = int(imitation_steps)

    # ------------------------------------------------------------------ anchor
    def set_anchor(self, actions: np.ndarray, sigma: float) -> None:
        """Warm up around ``actions`` (one row per step of an episode, SB3's [-1, 1] units).

        Each warm-up action is a truncated normal sample with std ``sigma`` around the
        anchor's action for that step, instead of a uniform draw. ``(n_envs, steps,
        action_dim)`` actions give each of ``n_envs`` envs stepping together its own anchor.
        """
        actions = np.asarray(actions, dtype=np.float32)
        if actions.ndim not in (2, 3) or actions.shape[-2] != self.steps_per_episode:
            raise ConfigError(f"anchor actions of shape {actions.shape}; expected ([n_envs,] "
                              f"{self.steps_per_episode}, action_dim)")
        self.anchor_actions = actions
        self.anchor_sigma = float(sigma)

    def imitate(self, observations: np.ndarray, actions: np.ndarray, steps: int = 300,
                lr: float = 1e-3, sync_target: bool = False) -> float:
        """Fit the actor to ``actions`` at ``observations`` by regression (``sync_target``: copy it to
        the target actor too).

        Returns the final mean squared error. The actor's own optimizer is left as it
        was; a separate Adam does the fitting.
        """
        actor = self.actor  # type: ignore[attr-defined]
        obs = torch.as_tensor(np.asarray(observations, dtype=np.float32), device=self.device)  # type: ignore[attr-defined]
        target = torch.as_tensor(np.asarray(actions, dtype=np.float32), device=self.device)  # type: ignore[attr-defined]
        optimizer = torch.optim.Adam(actor.parameters(), lr=lr)
        loss = torch.zeros(())
        actor.set_training_mode(True)
        for _ in range(steps):
            optimizer.zero_grad()
            loss = torch.nn.functional.mse_loss(actor(obs), target)
            loss.backward()
            optimizer.step()
        actor.set_training_mode(False)
        if sync_target:
            self.actor_target.load_state_dict(actor.state_dict())  # type: ignore[attr-defined]
        return float(loss.detach())

    # ------------------------------------------------------------ learning rates
    def _setup_model(self) -> None:
        super()._setup_model()  # type: ignore[misc]
        self._apply_learning_rates()

    def _current_lrs(self) -> tuple[float, float]:
        base = float(self.lr_schedule(self._current_progress_remaining))  # type: ignore[attr-defined]
        actor = base if self.lr_actor is None else float(self.lr_actor)
        critic = base if self.lr_critic is None else float(self.lr_critic)
        return actor, critic

    def _apply_learning_rates(self) -> None:
        lr_actor, lr_critic = self._current_lrs()
        update_learning_rate(self.actor.optimizer, lr_actor)  # type: ignore[attr-defined]
        update_learning_rate(self.critic.optimizer, lr_critic)  # type: ignore[attr-defined]
        ent_optimizer = getattr(self, "ent_coef_optimizer", None)  # SAC with ent_coef="auto"
        if ent_optimizer is not None:
            update_learning_rate(ent_optimizer, lr_actor)

    def _update_learning_rate(
        self, optimizers: list[torch.optim.Optimizer] | torch.optim.Optimizer
    ) -> None:
        """Replace SB3's one-rate-for-all update (called at every ``train()``)."""
        lr_actor, lr_critic = self._current_lrs()
        self.logger.record("train/lr_actor", lr_actor)  # type: ignore[attr-defined]
        self.logger.record("train/lr_critic", lr_critic)  # type: ignore[attr-defined]
        self._apply_learning_rates()

    def train(self, gradient_steps: int, batch_size: int = 100) -> None:
        super().train(gradient_steps, batch_size)  # type: ignore[misc]
        if self.elite is not None and self.elite_imitation_steps > 0:
            error = self.imitate(*self.elite, steps=self.elite_imitation_steps)
            self.logger.record("train/elite_mse", error)  # type: ignore[attr-defined]
        buffer = self.replay_buffer  # type: ignore[attr-defined]
        if isinstance(buffer, EpisodeRewardReplayBuffer) and buffer.baseline is not None:
            self.logger.record("train/reward_baseline", buffer.baseline)  # type: ignore[attr-defined]
        if isinstance(self.action_noise, TruncatedNormalNoise):  # type: ignore[attr-defined]
            self.logger.record("train/noise_sigma", self.action_noise.sigma)  # type: ignore[attr-defined]

    # --------------------------------------------------------------- exploration
    def _sample_action(
        self,
        learning_starts: int,
        action_noise: ActionNoise | None = None,
        n_envs: int = 1,
    ) -> tuple[np.ndarray, np.ndarray]:
        if not isinstance(action_noise, TruncatedNormalNoise):
            return super()._sample_action(learning_starts, action_noise, n_envs)  # type: ignore[misc]
        if self.num_timesteps < learning_starts:  # type: ignore[attr-defined]
            if self.anchor_actions is not None and self.steps_per_episode:
                # n_envs envs step together (num_timesteps grows by n_envs per step).
                step = (self.num_timesteps // n_envs) % self.steps_per_episode  # type: ignore[attr-defined]
                if self.anchor_actions.ndim == 3:  # one anchor per env
                    anchor = self.anchor_actions[:, step]
                else:
                    anchor = np.repeat(self.anchor_actions[step][None, :], n_envs, axis=0)
                around = action_noise.perturb(anchor, sigma=self.anchor_sigma)
                return self.policy.unscale_action(around), around  # type: ignore[attr-defined]
            # HAQ's warm-up: uniform random actions, no noise on top.
            return super()._sample_action(learning_starts, None, n_envs)  # type: ignore[misc]
        unscaled, _ = self.predict(self._last_obs, deterministic=False)  # type: ignore[attr-defined]
        scaled = self.policy.scale_action(unscaled)  # type: ignore[attr-defined]
        buffer_action = action_noise.perturb(scaled)
        return self.policy.unscale_action(buffer_action), buffer_action  # type: ignore[attr-defined]

    # ------------------------------------------------------------------- learn
    def _setup_learn(
        self,
        total_timesteps: int,
        callback: MaybeCallback = None,
        reset_num_timesteps: bool = True,
        tb_log_name: str = "run",
        progress_bar: bool = False,
    ) -> tuple[int, BaseCallback]:
        buffer = self.replay_buffer  # type: ignore[attr-defined]
        if (reset_num_timesteps or self._last_obs is None) and isinstance(  # type: ignore[attr-defined]
            buffer, EpisodeRewardReplayBuffer
        ):
            buffer.discard_pending()  # the env is about to be reset
        noise = self.action_noise
        episodes = noise.episodes if isinstance(noise, TruncatedNormalNoise) else None
        result = super()._setup_learn(  # type: ignore[misc]
            total_timesteps, callback, reset_num_timesteps, tb_log_name, progress_bar
        )
        if isinstance(self.action_noise, VectorizedActionNoise) and isinstance(
                self.action_noise.base_noise, TruncatedNormalNoise):
            # With several envs SB3 gives each env its own copy of the noise; HAQ's std follows
            # the run's episode count, so one noise process (one generator) serves them all.
            self.action_noise = self.action_noise.base_noise
        if isinstance(noise, TruncatedNormalNoise) and episodes is not None:
            noise.episodes = episodes  # undo the reset() SB3 calls at learn() start
        return result


class HaqDDPG(HaqAlgorithmMixin, DDPG):
    """SB3 DDPG with HAQ's learning rates, warm-up and truncated-normal exploration."""


class HaqTD3(HaqAlgorithmMixin, TD3):
    """SB3 TD3 with the same HAQ settings as :class:`HaqDDPG` (research option)."""


class HaqSAC(HaqAlgorithmMixin, SAC):
    """SB3 SAC with HAQ's learning rates, warm-up and replay (entropy exploration)."""


ALGO_CLASSES: dict[str, type[HaqAlgorithmMixin]] = {
    "ddpg": HaqDDPG,
    "td3": HaqTD3,
    "sac": HaqSAC,
}
