"""HAQ's exploration: truncated normal noise around the actor's action.

HAQ (``lib/rl/ddpg.py: select_action``) samples the executed action from a normal
distribution centred on the actor's output, truncated to the action range, with a std
``init_delta * delta_decay ** (episode - warmup)``. Truncation (not clipping) matters:
clipping would pile probability mass on the lowest / highest bit width.

HAQ's schedule (std x0.99 per episode) is tuned for its 600-episode runs, which end with
a std of 0.5 * 0.99 ** 580 = 0.0015, i.e. pure exploitation. A 80-episode run with the
same decay would still explore with std 0.27 at its end, so :func:`run_length_decay`
compresses HAQ's schedule into a shorter run: same start, same end.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from stable_baselines3.common.noise import ActionNoise

from haq_rl.errors import ConfigError, check_integer

#: HAQ's runs (``rl_quantize.py``): 600 episodes, the first 20 of them warm-up, and the
#: noise std multiplied by 0.99 after every episode past the warm-up.
HAQ_EPISODES = 600
HAQ_WARMUP_EPISODES = 20
HAQ_NOISE_DECAY = 0.99


def run_length_decay(noisy_episodes: int) -> float:
    """Per-episode decay that takes HAQ's start std to HAQ's final std in ``noisy_episodes``.

    ``noisy_episodes`` are the episodes that draw exploration noise (after the warm-up).
    A run as long as HAQ's gets HAQ's 0.99; a shorter run decays faster, a longer one
    slower, and every run ends at 0.99 ** 580 = 0.29 % of the start std.
    """
    check_integer("noisy_episodes", noisy_episodes, 1)
    return HAQ_NOISE_DECAY ** ((HAQ_EPISODES - HAQ_WARMUP_EPISODES) / noisy_episodes)


def truncated_normal(
    mu: np.ndarray,
    sigma: float,
    low: float,
    high: float,
    rng: np.random.Generator,
) -> np.ndarray:
    """Sample ``N(mu, sigma^2)`` truncated to ``[low, high]`` by inverse-CDF sampling.

    One uniform draw per element (so the random stream does not depend on rejections),
    and no scipy: ``torch.special.ndtr``/``ndtri`` in float64 give the normal CDF and its
    inverse. ``mu`` is clipped into the interval first, so 0 always lies in the
    standardised interval and the CDF difference never underflows.
    """
    mu64 = np.clip(np.asarray(mu, dtype=np.float64), low, high)
    u = rng.uniform(size=mu64.shape)
    if sigma <= 0.0:
        return mu64
    lo = torch.special.ndtr(torch.from_numpy((low - mu64) / sigma))
    hi = torch.special.ndtr(torch.from_numpy((high - mu64) / sigma))
    p = lo + torch.from_numpy(u) * (hi - lo)
    x = mu64 + sigma * torch.special.ndtri(p).numpy()
    # ndtri(0) = -inf is possible for u == 0; clipping maps it to the bound.
    return np.clip(x, low, high)


class TruncatedNormalNoise(ActionNoise):
    """Truncated normal exploration noise whose std decays per episode after warm-up.

    The std used in episode ``k`` (counted by :meth:`reset`, which SB3 calls at every
    episode end, warm-up episodes included) is
    ``sigma * decay ** max(0, k - warmup_episodes)``, as in HAQ.

    SB3's stock algorithms add ``noise()`` to the action and clip; the HAQ algorithm
    classes (:mod:`haq_rl.agent.algos`) instead call :meth:`perturb` with the action, so
    the executed action is a truncated normal sample around it and stays in the bounds.

    Args:
        action_dim: size of the action vector.
        sigma: initial std, in the units of the scaled action space ([-1, 1]).
        decay: multiplicative decay per episode after warm-up.
        warmup_episodes: episodes before the decay starts.
        low, high: bounds of the scaled action space.
        seed: seed of the noise's own generator (independent of numpy's global one).
    """

    def __init__(
        self,
        action_dim: int,
        sigma: float = 1.0,
        decay: float = 0.99,
        warmup_episodes: int = 20,
        low: float = -1.0,
        high: float = 1.0,
        seed: int | None = None,
    ) -> None:
        super().__init__()
        check_integer("action_dim", action_dim, 1)
        if not low < high:
            raise ConfigError(f"low={low} must be < high={high}")
        self.action_dim = int(action_dim)
        self.initial_sigma = float(sigma)
        self.decay = float(decay)
        self.warmup_episodes = int(warmup_episodes)
        self.low = float(low)
        self.high = float(high)
        self.episodes = 0
        self._rng = np.random.default_rng(seed)

    @property
    def sigma(self) -> float:
        """The std used for the current episode."""
        return self.initial_sigma * self.decay ** max(0, self.episodes - self.warmup_episodes)

    def perturb(self, action: np.ndarray, sigma: float | None = None) -> np.ndarray:
        """Return a truncated normal sample around ``action`` (any shape), in bounds.

        The std is the current episode's (:attr:`sigma`) unless ``sigma`` is given.
        """
        std = self.sigma if sigma is None else float(sigma)
        sample = truncated_normal(action, std, self.low, self.high, self._rng)
        # float32 like SB3's action buffers; re-clip since rounding to float32 can overshoot.
        return np.clip(sample.astype(np.float32), self.low, self.high)

    def __call__(self) -> np.ndarray:
        """Additive noise for stock SB3 algorithms: a truncated sample around 0.

        ``action + noise`` may leave the bounds here (SB3 then clips); use the HAQ
        algorithm classes to get truncation around the action itself.
        """
        return self.perturb(np.zeros(self.action_dim, dtype=np.float32))

    def reset(self, indices: Sequence[int] | None = None) -> None:
        """Called by SB3 at each episode end: count the episode (decays after warm-up).

        With several envs SB3 calls it once per finished episode with that env's index: one
        noise process serves every env, so each call still counts one episode.
        """
        self.episodes += 1

    def __repr__(self) -> str:
        return (
            f"TruncatedNormalNoise(sigma={self.sigma:.4g}, initial_sigma={self.initial_sigma}, "
            f"decay={self.decay}, warmup_episodes={self.warmup_episodes}, episodes={self.episodes})"
        )
