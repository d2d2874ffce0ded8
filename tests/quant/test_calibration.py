"""KL (TensorRT entropy) clip on synthetic histograms: sane fractions of the range."""

from __future__ import annotations

import pytest
import torch

from haq_rl.quant.calibration import HIST_BINS, InputStats, clip_kl


def _stats(x: torch.Tensor) -> InputStats:
    """What ``collect_input_stats`` would keep for samples ``x`` of one layer input."""
    a = x.abs()
    top = float(a.max())
    hist = torch.histc(a, bins=HIST_BINS, min=0.0, max=top).double()
    return InputStats(min=float(x.min()), max=float(x.max()), hist=hist,
                      zeros=float((a == 0).sum()))


@pytest.fixture(scope="module")
def gaussian() -> torch.Tensor:
    return torch.randn(400_000, generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize("relu", [False, True], ids=["signed", "half"])
def test_kl_clip_gaussian_is_a_sane_fraction_of_sigma(gaussian: torch.Tensor,
                                                      relu: bool) -> None:
    stats = _stats(torch.relu(gaussian) if relu else gaussian)
    assert stats.signed is not relu
    clips = {b: clip_kl(stats, b) for b in range(2, 9)}
    assert 3.0 <= clips[8] <= 5.0, clips
    assert 1.5 < clips[4] <= clips[8], clips
    assert all(c > 1.5 for c in clips.values()), clips
    for b in range(3, 9):  # monotone-ish: never clearly smaller with more bits
        assert clips[b] >= 0.9 * clips[b - 1], clips


def test_kl_clip_ignores_dominant_nonzero_spike() -> None:
    """A normalised image input: ~80 % background at one non-zero |x| below the digits.

    Clipping just above the spike gives KL ~ 0 (P and Q both near-deltas) and used to
    saturate every foreground pixel (the 8-bit model then fell from 96 % to 32 %).
    """
    g = torch.Generator().manual_seed(0)
    pixels = torch.where(torch.rand(200_000, generator=g) < 0.8, torch.zeros(()),
                         torch.rand(200_000, generator=g))
    pixels = torch.where(torch.rand(200_000, generator=g) < 0.05, torch.ones(()), pixels)
    x = (torch.round(pixels * 255) / 255 - 0.1307) / 0.3081  # discrete, like MNIST
    stats = _stats(x)
    for bits in (8, 6, 4, 3):
        clip = clip_kl(stats, bits)
        saturated = float((x.abs() > clip).float().mean())
        assert clip > 0.5 * stats.absmax and saturated <= 0.05, (bits, clip, saturated)


def test_kl_clip_degenerate_inputs() -> None:
    empty = InputStats(min=0.0, max=0.0, hist=torch.zeros(HIST_BINS, dtype=torch.float64))
    assert clip_kl(empty, 4) == 0.0
    only_zeros = InputStats(min=0.0, max=1.0, hist=torch.zeros(HIST_BINS, dtype=torch.float64),
                            zeros=10.0)
    only_zeros.hist[0] = 10.0
    assert clip_kl(only_zeros, 4) == 1.0
    spike = torch.zeros(HIST_BINS, dtype=torch.float64)
    spike[-1] = 100.0  # all mass in the top bin: nothing to clip
    assert clip_kl(InputStats(min=0.0, max=2.0, hist=spike), 4) == pytest.approx(2.0)
