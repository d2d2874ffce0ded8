"""A tiny environment with the quantization env's contract, for the agent's tests.

Contract (as ``haq_rl.env``'s QuantizationEnv): Box(-1, 1, (d,)) actions, Box(0, 1, (F,))
observations, fixed length T, reward 0 until the last step, which pays the whole episode
reward with ``terminated=True`` and ``info["applied_actions"]`` of shape (T, d).

The task: step t's action maps linearly to "bits" in [2, 8]; the episode reward is
``-mean((bits - target)^2) / 36`` (in [-1, 0]). An optional "action wall" caps the
actions at ``cap`` and reports the capped actions as applied, like the budget wall.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

TARGET_BITS = np.array([3.0, 7.0, 5.0, 4.0, 8.0, 2.0])
MIN_BITS, MAX_BITS = 2.0, 8.0


def action_to_bits(action: np.ndarray) -> np.ndarray:
    """[-1, 1] -> [2, 8], linearly (continuous 'bits', so the toy learns fast)."""
    return MIN_BITS + (np.clip(action, -1.0, 1.0) + 1.0) / 2.0 * (MAX_BITS - MIN_BITS)


def bits_to_action(bits: np.ndarray) -> np.ndarray:
    return (np.asarray(bits) - MIN_BITS) / (MAX_BITS - MIN_BITS) * 2.0 - 1.0


class ToyQuantEnv(gym.Env):
    """T = 6 steps, one action per step, terminal reward only."""

    metadata: dict[str, Any] = {"render_modes": []}

    def __init__(
        self, action_dim: int = 1, cap: float | None = None, report_applied: bool = True
    ) -> None:
        super().__init__()
        self.episode_length = len(TARGET_BITS)
        self.action_dim = action_dim
        self.cap = cap
        self.report_applied = report_applied
        self.action_space = spaces.Box(-1.0, 1.0, shape=(action_dim,), dtype=np.float32)
        # One-hot of the step index plus the previous action mapped to [0, 1].
        self.observation_space = spaces.Box(
            0.0, 1.0, shape=(self.episode_length + 1,), dtype=np.float32
        )
        self._t = 0
        self._actions = np.zeros((self.episode_length, action_dim), dtype=np.float32)

    def _obs(self) -> np.ndarray:
        obs = np.zeros(self.episode_length + 1, dtype=np.float32)
        if self._t < self.episode_length:
            obs[self._t] = 1.0
        if self._t > 0:
            obs[-1] = (float(self._actions[self._t - 1, 0]) + 1.0) / 2.0
        return obs

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        self._t = 0
        self._actions[:] = 0.0
        return self._obs(), {}

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        self._actions[self._t] = np.asarray(action, dtype=np.float32).reshape(self.action_dim)
        self._t += 1
        if self._t < self.episode_length:
            return self._obs(), 0.0, False, False, {}
        applied = self._actions.copy()
        if self.cap is not None:
            applied = np.minimum(applied, np.float32(self.cap))
        bits = action_to_bits(applied[:, 0])
        reward = float(-np.mean((bits - TARGET_BITS) ** 2) / 36.0)
        info: dict[str, Any] = {
            "accuracy": 100.0 * (1.0 + reward),
            "cost_ratio": float(bits.mean() / MAX_BITS),
            "w_bits": np.round(bits).astype(np.int64),
        }
        if self.report_applied:
            info["applied_actions"] = applied
        return self._obs(), reward, True, False, info


def optimal_reward(cap: float | None = None) -> float:
    """Best achievable reward (bits equal to the target, under the cap)."""
    bits = TARGET_BITS if cap is None else np.minimum(TARGET_BITS, action_to_bits(np.array(cap)))
    return float(-np.mean((bits - TARGET_BITS) ** 2) / 36.0)
