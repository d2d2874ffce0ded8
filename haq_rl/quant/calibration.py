"""Calibration: statistics of each quantizable layer's input, and clip ranges from them.

Statistics are gathered once (two forward passes over the calibration batches: the
range, then a histogram of |x| over that range). Clip ranges for any bit width are then
computed from the histogram alone, so the applier can derive them lazily per
(layer, a_bits) without touching data again.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from haq_rl.errors import ConfigError

log = logging.getLogger(__name__)

HIST_BINS = 2048
_MSE_CANDIDATES = 48
_KL_CANDIDATES = 96
# Most of the non-zero |x| mass a KL threshold may saturate. KL(P || Q) compares shapes
# after renormalisation, so it cannot see how much mass was clipped when that mass lands
# in a bin Q reproduces exactly (e.g. a dominant spike just below the threshold).
# Smooth data never needs this much clipping (heavy tails at 2 bits: ~2-5 %).
_KL_MAX_CLIPPED = 0.05


@dataclass(frozen=True)
class InputStats:
    """What calibration saw entering one layer.

    ``hist`` counts |x| in ``HIST_BINS`` equal bins over ``[0, absmax]``; ``zeros`` of
    those counts (in bin 0) are exact zeros. They are kept apart because the zero spike
    after a ReLU is exactly representable and would otherwise dominate the KL search.
    ``signed`` is False when the minimum is >= 0 (e.g. after ReLU), which makes the
    activation quantizer unsigned.
    """

    min: float
    max: float
    hist: torch.Tensor
    zeros: float = 0.0

    def nonzero_hist(self) -> torch.Tensor:
        """Histogram without the exact zeros."""
        counts = self.hist.clone()
        counts[0] = max(float(counts[0]) - self.zeros, 0.0)
        return counts

    @property
    def absmax(self) -> float:
        return max(abs(self.min), abs(self.max))

    @property
    def signed(self) -> bool:
        return self.min < 0.0


def _first_tensor(batch: object) -> torch.Tensor:
    """Accept a tensor or a (inputs, labels, ...) tuple as one calibration batch."""
    if isinstance(batch, torch.Tensor):
        return batch
    if isinstance(batch, (tuple, list)) and batch and isinstance(batch[0], torch.Tensor):
        return batch[0]
    raise ConfigError(f"calibration batches must be tensors or (inputs, ...) tuples, "
                      f"got {type(batch).__name__}")


@torch.no_grad()
def collect_input_stats(model: nn.Module, layers: Mapping[str, nn.Module],
                        inputs: Sequence[object], bins: int = HIST_BINS,
                        histograms: bool = True) -> dict[str, InputStats]:
    """Run ``inputs`` through ``model`` (eval mode) and summarise each layer's input.

    ``histograms=False`` skips the second pass that fills ``hist`` and ``zeros`` (left at
    zero): enough for the ranges and signs, and for ``clip_range(..., "max")``.
    """
    batches = [_first_tensor(b) for b in inputs]
    if not batches:
        raise ConfigError("calibration needs at least one input batch")
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    lo = {name: float("inf") for name in layers}
    hi = {name: float("-inf") for name in layers}
    hist = {name: torch.zeros(bins, dtype=torch.float64) for name in layers}
    zeros = dict.fromkeys(layers, 0.0)

    def range_hook(name: str):  # noqa: ANN202 - hook factory
        def hook(_module: nn.Module, args: tuple) -> None:
            x = args[0].detach()
            lo[name] = min(lo[name], float(x.min()))
            hi[name] = max(hi[name], float(x.max()))
        return hook

    def hist_hook(name: str):  # noqa: ANN202 - hook factory
        def hook(_module: nn.Module, args: tuple) -> None:
            top = max(abs(lo[name]), abs(hi[name]))
            if top > 0.0:
                x = args[0].detach().abs().float()
                hist[name] += torch.histc(x, bins=bins, min=0.0, max=top).double().cpu()
                zeros[name] += float((x == 0).sum())
        return hook

    was_training = model.training
    model.eval()  # BatchNorm must use running statistics, and must not update them
    try:
        for factory in (range_hook, hist_hook) if histograms else (range_hook,):
            handles = [m.register_forward_pre_hook(factory(n)) for n, m in layers.items()]
            try:
                for x in batches:
                    model(x.to(device))
            finally:
                for h in handles:
                    h.remove()
    finally:
        model.train(was_training)
    missing = [n for n in layers if lo[n] == float("inf")]
    if missing:
        raise ConfigError(f"calibration forward never reached layers {missing[:5]}")
    log.debug("calibrated %d layers on %d batches", len(layers), len(batches))
    return {n: InputStats(min=lo[n], max=hi[n], hist=hist[n], zeros=zeros[n]) for n in layers}


def _positive_levels(bits: int, signed: bool) -> int:
    return 2 ** (bits - 1) - 1 if signed else 2 ** bits - 1


def clip_max(stats: InputStats) -> float:
    """Observed max |x|."""
    return stats.absmax


def clip_percentile(stats: InputStats, percentile: float) -> float:
    """``percentile`` of |x| from the histogram (linear inside a bin)."""
    counts = stats.hist
    total = float(counts.sum())
    if total <= 0 or stats.absmax == 0.0:
        return stats.absmax
    width = stats.absmax / counts.numel()
    cdf = torch.cumsum(counts, 0)
    target = total * percentile / 100.0
    idx = int(torch.searchsorted(cdf, torch.tensor([target], dtype=cdf.dtype)).item())
    idx = min(idx, counts.numel() - 1)
    before = float(cdf[idx - 1]) if idx > 0 else 0.0
    inside = float(counts[idx])
    frac = (target - before) / inside if inside > 0 else 1.0
    return min(stats.absmax, (idx + min(max(frac, 0.0), 1.0)) * width)


def _mse_errors(centers: torch.Tensor, counts: torch.Tensor, clips: torch.Tensor,
                levels: int) -> torch.Tensor:
    scale = (clips / levels)[:, None]
    q = torch.clamp(torch.round(centers[None, :] / scale), 0, levels) * scale
    return ((centers[None, :] - q) ** 2 * counts[None, :]).sum(1)


def clip_mse(stats: InputStats, bits: int) -> float:
    """Clip that minimises the expected squared quantization error over the histogram.

    Coarse-to-fine grid search (two rounds of ``_MSE_CANDIDATES`` clips) keeps this at a
    few milliseconds per (layer, bits).
    """
    counts = stats.nonzero_hist().float()
    if stats.absmax == 0.0 or float(counts.sum()) <= 0:
        return stats.absmax
    nb = counts.numel()
    width = stats.absmax / nb
    centers = (torch.arange(nb, dtype=torch.float32) + 0.5) * width
    levels = _positive_levels(bits, stats.signed)
    step = 1.0 / _MSE_CANDIDATES
    clips = torch.linspace(step, 1.0, _MSE_CANDIDATES) * stats.absmax
    best = float(clips[int(torch.argmin(_mse_errors(centers, counts, clips, levels)))])
    lo, hi = max(best - step * stats.absmax, 1e-12), min(best + step * stats.absmax,
                                                          stats.absmax)
    clips = torch.linspace(lo, hi, _MSE_CANDIDATES)
    return float(clips[int(torch.argmin(_mse_errors(centers, counts, clips, levels)))])


def clip_kl(stats: InputStats, bits: int) -> float:
    """TensorRT-style threshold minimising KL(P || Q) between the clipped and quantized |x|.

    Candidate thresholds (in bins) start at the number of quantization levels, as in
    TensorRT, but never saturate more than ``_KL_MAX_CLIPPED`` of the non-zero samples:
    with a dominant non-zero spike (the background value of a normalised image input
    holds ~80 % of |x|), a threshold just past the spike makes P and Q both near-deltas,
    KL ~ 0, and everything above the spike would be clipped.
    """
    counts = stats.nonzero_hist().double()
    nb = counts.numel()
    nq = _positive_levels(bits, stats.signed) + 1  # grid points in [0, clip]
    total = float(counts.sum())
    if stats.absmax == 0.0 or total <= 0 or nq * 4 > nb:
        return stats.absmax  # too many levels for the histogram to say anything
    width = stats.absmax / nb
    tail = torch.flip(torch.cumsum(torch.flip(counts, [0]), 0), [0])  # sum(counts[t:])
    first = int((tail > _KL_MAX_CLIPPED * total).sum())  # smallest t clipping <= the cap
    start = max(nq, first)
    if start >= nb:
        return stats.absmax
    thresholds = torch.unique(torch.linspace(start, nb, _KL_CANDIDATES).round().long())
    j = torch.arange(nb)
    inside = j[None, :] < thresholds[:, None]  # (C, B)
    sliced = torch.where(inside, counts[None, :], torch.zeros((), dtype=counts.dtype))
    p = sliced.clone()
    rows = torch.arange(len(thresholds))
    outliers = torch.where(thresholds < nb, tail[thresholds.clamp(max=nb - 1)],
                           torch.zeros((), dtype=counts.dtype))
    p[rows, thresholds - 1] += outliers
    nonzero = (p > 0) & inside
    level = torch.clamp((j[None, :] * nq) // thresholds[:, None], max=nq - 1)
    mass = torch.zeros(len(thresholds), nq, dtype=counts.dtype).scatter_add_(1, level, sliced)
    size = torch.zeros(len(thresholds), nq, dtype=counts.dtype).scatter_add_(
        1, level, nonzero.to(counts.dtype))
    q = torch.where(nonzero, mass.gather(1, level) / size.gather(1, level).clamp_min(1), 0.0)
    p = p / p.sum(1, keepdim=True)
    q = q / q.sum(1, keepdim=True).clamp_min(1e-30)
    q = torch.where(nonzero & (q <= 0), 1e-10, q)
    kl = torch.where(nonzero, p * torch.log(p.clamp_min(1e-30) / q.clamp_min(1e-30)), 0.0)
    best = int(torch.argmin(kl.sum(1)))
    return float(thresholds[best]) * width


def clip_range(stats: InputStats, bits: int, method: str, percentile: float = 99.99) -> float:
    """Clip value for ``bits``-bit quantization of this input by ``method``."""
    if method == "max":
        return clip_max(stats)
    if method == "percentile":
        return clip_percentile(stats, percentile)
    if method == "mse":
        return clip_mse(stats, bits)
    if method == "kl":
        return clip_kl(stats, bits)
    raise ConfigError(f"unknown calibration method {method!r}")
