"""EpisodeRewardReplayBuffer: HAQ's episode-final reward, applied actions, baseline."""

from __future__ import annotations

import numpy as np
import pytest
from gymnasium import spaces

from haq_rl.agent import EpisodeRewardReplayBuffer
from haq_rl.errors import ConfigError

T, F = 4, 3
OBS_SPACE = spaces.Box(0.0, 1.0, shape=(F,), dtype=np.float32)
ACT_SPACE = spaces.Box(-1.0, 1.0, shape=(1,), dtype=np.float32)


def make_buffer(**kwargs: object) -> EpisodeRewardReplayBuffer:
    return EpisodeRewardReplayBuffer(100, OBS_SPACE, ACT_SPACE, device="cpu", **kwargs)  # type: ignore[arg-type]


def add_episode(
    buf: EpisodeRewardReplayBuffer,
    final_reward: float,
    proposed: np.ndarray,
    info_last: dict | None = None,
) -> None:
    for t in range(T):
        obs = np.full((1, F), t / T, dtype=np.float32)
        next_obs = np.full((1, F), (t + 1) / T, dtype=np.float32)
        last = t == T - 1
        buf.add(
            obs,
            next_obs,
            proposed[t].reshape(1, 1),
            np.array([final_reward if last else 0.0], dtype=np.float32),
            np.array([last]),
            [dict(info_last or {}) if last else {}],
        )


def test_episode_is_held_back_until_done_then_gets_final_reward() -> None:
    buf = make_buffer()
    proposed = np.linspace(-0.5, 0.5, T, dtype=np.float32)
    for t in range(T - 1):
        buf.add(
            np.zeros((1, F)),
            np.zeros((1, F)),
            proposed[t].reshape(1, 1),
            np.zeros(1),
            np.array([False]),
            [{}],
        )
        assert buf.size() == 0 and buf.pending_steps == t + 1
    buf.discard_pending()
    assert buf.pending_steps == 0

    add_episode(buf, -0.25, proposed)
    assert buf.size() == T and buf.pending_steps == 0
    assert np.allclose(buf.rewards[:T, 0], -0.25)
    assert buf.dones[:T, 0].tolist() == [0, 0, 0, 1]
    assert np.allclose(buf.actions[:T, 0, 0], proposed)  # no applied actions reported
    assert buf.episodes_stored == 1 and buf.last_episode_reward == pytest.approx(-0.25)


def test_applied_actions_replace_proposed_ones() -> None:
    buf = make_buffer()
    proposed = np.full(T, 0.9, dtype=np.float32)
    applied = np.array([[0.9], [0.1], [-0.3], [0.9]], dtype=np.float32)
    add_episode(buf, 1.0, proposed, {"applied_actions": applied})
    assert np.allclose(buf.actions[:T, 0, :], applied)


def test_applied_actions_ignored_when_disabled_or_misaligned() -> None:
    proposed = np.full(T, 0.9, dtype=np.float32)
    off = make_buffer(use_applied_actions=False)
    add_episode(off, 1.0, proposed, {"applied_actions": np.zeros((T, 1), dtype=np.float32)})
    assert np.allclose(off.actions[:T, 0, 0], 0.9)
    bad = make_buffer()
    add_episode(bad, 1.0, proposed, {"applied_actions": np.zeros((T + 2, 1), dtype=np.float32)})
    assert np.allclose(bad.actions[:T, 0, 0], 0.9)


def test_truncated_episode_is_dropped() -> None:
    buf = make_buffer()
    add_episode(buf, 1.0, np.zeros(T, dtype=np.float32), {"TimeLimit.truncated": True})
    assert buf.size() == 0 and buf.pending_steps == 0


def test_sample_subtracts_moving_average_baseline() -> None:
    buf = make_buffer(baseline_decay=0.5)
    add_episode(buf, 1.0, np.zeros(T, dtype=np.float32))
    add_episode(buf, 3.0, np.zeros(T, dtype=np.float32))
    np.random.seed(0)
    first = buf.sample(16)
    raw1 = first.rewards.numpy().ravel() + buf.baseline
    assert set(np.round(raw1, 5)) <= {1.0, 3.0}
    assert buf.baseline == pytest.approx(raw1.mean(), abs=1e-6)  # first batch sets it
    b1 = buf.baseline
    second = buf.sample(16)
    raw2_mean = second.rewards.numpy().mean() + buf.baseline
    # HAQ: b += alpha * (batch_mean - b) with alpha = 1 - decay = 0.5
    assert buf.baseline == pytest.approx(0.5 * b1 + 0.5 * raw2_mean, abs=1e-6)
    # Every sampled transition of an episode gets final_reward - baseline.
    raw2 = second.rewards.numpy().ravel() + buf.baseline
    assert set(np.round(raw2, 5)) <= {1.0, 3.0}


def test_update_baseline_formula() -> None:
    buf = make_buffer(baseline_decay=0.95)
    assert buf.update_baseline(2.0) == 2.0
    assert buf.update_baseline(4.0) == pytest.approx(0.95 * 2.0 + 0.05 * 4.0)


def test_synchronous_envs_store_their_own_reward_and_applied_actions() -> None:
    buf = EpisodeRewardReplayBuffer(100, OBS_SPACE, ACT_SPACE, device="cpu", n_envs=2)
    applied = np.array([[0.5], [0.25], [-0.5], [1.0]], dtype=np.float32)
    for t in range(T):
        last = t == T - 1
        buf.add(np.full((2, F), t / T, dtype=np.float32), np.full((2, F), (t + 1) / T, dtype=np.float32),
                np.array([[0.1], [0.2]], dtype=np.float32), np.array([-1.0, 2.0] if last else [0.0, 0.0]),
                np.array([last, last]), [{"applied_actions": applied} if last else {}, {}])
    assert buf.episodes_stored == 2 and buf.pos == T
    assert buf.rewards[:T].tolist() == [[-1.0, 2.0]] * T  # each env's own final reward on every step
    assert buf.actions[:T, 0, 0].tolist() == applied.ravel().tolist()  # env 0: its applied actions
    assert np.allclose(buf.actions[:T, 1, 0], 0.2)  # env 1 reported none: its proposed ones
    assert buf.dones[:T].tolist() == [[0.0, 0.0]] * (T - 1) + [[1.0, 1.0]]
    with pytest.raises(ConfigError, match="same step"):
        buf.add(np.zeros((2, F)), np.zeros((2, F)), np.zeros((2, 1)), np.zeros(2), np.array([True, False]), [{}, {}])


def test_bad_baseline_decay() -> None:
    with pytest.raises(ConfigError, match="baseline_decay"):
        make_buffer(baseline_decay=1.0)
