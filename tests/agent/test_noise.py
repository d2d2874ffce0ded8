"""TruncatedNormalNoise and truncated_normal."""

from __future__ import annotations

import numpy as np
import pytest

from haq_rl.agent import TruncatedNormalNoise, run_length_decay, truncated_normal


@pytest.mark.parametrize("sigma", [1e-6, 0.1, 1.0, 10.0])
def test_samples_stay_in_bounds(sigma: float) -> None:
    rng = np.random.default_rng(0)
    mu = np.concatenate([np.array([-1.0, 1.0, 0.0]), rng.uniform(-1, 1, 2000)])
    x = truncated_normal(mu, sigma, -1.0, 1.0, rng)
    assert x.shape == mu.shape
    assert np.all(x >= -1.0) and np.all(x <= 1.0)


def test_small_sigma_stays_near_mean_and_large_sigma_spreads() -> None:
    rng = np.random.default_rng(1)
    mu = np.full(5000, 0.3)
    assert np.allclose(truncated_normal(mu, 1e-4, -1.0, 1.0, rng), 0.3, atol=1e-3)
    wide = truncated_normal(mu, 100.0, -1.0, 1.0, rng)
    # Nearly uniform on [-1, 1]: mean ~0, std ~ 1/sqrt(3).
    assert abs(wide.mean()) < 0.05 and abs(wide.std() - 1 / np.sqrt(3)) < 0.03


def test_truncation_is_not_clipping() -> None:
    # At the bound, clipping would put half of the mass exactly on 1.0.
    x = truncated_normal(np.ones(4000), 0.5, -1.0, 1.0, np.random.default_rng(2))
    assert np.mean(x == 1.0) < 0.01
    assert x.mean() < 1.0 - 0.3  # mean of a half-normal with sigma 0.5 below the bound


def test_perturb_in_bounds_and_float32() -> None:
    noise = TruncatedNormalNoise(2, sigma=1.0, seed=0)
    for a in (np.array([[1.0, -1.0]], dtype=np.float32), np.zeros((1, 2), dtype=np.float32)):
        out = noise.perturb(a)
        assert out.shape == a.shape and out.dtype == np.float32
        assert np.all(np.abs(out) <= 1.0)
    assert noise().shape == (2,)


def test_sigma_decays_per_episode_only_after_warmup() -> None:
    noise = TruncatedNormalNoise(1, sigma=1.0, decay=0.9, warmup_episodes=3, seed=0)
    sigmas = []
    for _ in range(6):
        sigmas.append(noise.sigma)
        for _ in range(5):  # steps within an episode do not decay
            noise.perturb(np.zeros(1, dtype=np.float32))
        assert noise.sigma == sigmas[-1]
        noise.reset()
    assert sigmas == pytest.approx([1.0, 1.0, 1.0, 1.0, 0.9, 0.81])


def test_same_seed_same_samples() -> None:
    a, b = TruncatedNormalNoise(1, seed=7), TruncatedNormalNoise(1, seed=7)
    xs = [a.perturb(np.array([0.5], dtype=np.float32)) for _ in range(10)]
    ys = [b.perturb(np.array([0.5], dtype=np.float32)) for _ in range(10)]
    assert np.array_equal(np.array(xs), np.array(ys))


def test_run_length_decay_compresses_haqs_schedule() -> None:
    assert run_length_decay(580) == pytest.approx(0.99)  # HAQ's own run: 600 - 20 warm-up
    for noisy in (59, 179, 1000):  # every run ends at HAQ's final std
        assert run_length_decay(noisy) ** noisy == pytest.approx(0.99**580)
    assert run_length_decay(59) < 0.99 < run_length_decay(1000)
    with pytest.raises(ValueError, match="noisy_episodes=0"):
        run_length_decay(0)
