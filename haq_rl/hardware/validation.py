"""How well a cost model explains a published or measured table (numpy only, no scipy)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from haq_rl.errors import DataFormatError
from haq_rl.hardware.cost_index import cost_at, layer_costs


def relative_error(predicted: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """|predicted - reference| / |reference| elementwise (reference entries must be non-zero)."""
    predicted = np.asarray(predicted, dtype=np.float64)
    reference = np.asarray(reference, dtype=np.float64)
    return np.abs(predicted - reference) / np.abs(reference)


def pearson(x: np.ndarray, y: np.ndarray) -> float:
    """Pearson correlation of two equally long samples."""
    x = np.asarray(x, dtype=np.float64).ravel()
    y = np.asarray(y, dtype=np.float64).ravel()
    xc, yc = x - x.mean(), y - y.mean()
    denom = np.sqrt((xc * xc).sum() * (yc * yc).sum())
    return float((xc * yc).sum() / denom) if denom > 0 else float("nan")


def rankdata(x: np.ndarray) -> np.ndarray:
    """Ranks 1..n with ties given their average rank (as scipy.stats.rankdata 'average')."""
    x = np.asarray(x, dtype=np.float64).ravel()
    order = np.argsort(x, kind="mergesort")
    sorted_x = x[order]
    # Start of each run of equal values, then the average of the run's 1-based positions.
    starts = np.r_[True, sorted_x[1:] != sorted_x[:-1]]
    run_id = np.cumsum(starts) - 1
    first = np.flatnonzero(starts)
    last = np.r_[first[1:], len(x)] - 1
    ranks_sorted = ((first + last) / 2.0 + 1.0)[run_id]
    ranks = np.empty_like(ranks_sorted)
    ranks[order] = ranks_sorted
    return ranks


def spearman(x: np.ndarray, y: np.ndarray) -> float:
    """Spearman rank correlation: Pearson of the (tie-averaged) ranks."""
    return pearson(rankdata(x), rankdata(y))


def random_policies(num_layers: int, count: int, min_bits: int, max_bits: int,
                    seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``count`` random mixed policies: (w_bits, a_bits) int arrays [count, num_layers]."""
    rng = np.random.default_rng(seed)
    w = rng.integers(min_bits, max_bits + 1, size=(count, num_layers))
    a = rng.integers(min_bits, max_bits + 1, size=(count, num_layers))
    return w, a


@dataclass(frozen=True)
class TableComparison:
    """Agreement between a model's table and a reference table of the same shape."""

    median_rel_error: float
    p95_rel_error: float
    max_rel_error: float
    pearson_entries: float
    spearman_policies: float
    max_policy_rel_error: float
    uniform_totals: dict[int, tuple[float, float]]  # bits -> (ours, reference)
    policies: int
    seed: int

    def lines(self) -> list[str]:
        out = [
            f"per-entry relative error: median {self.median_rel_error:.2%}, "
            f"95th percentile {self.p95_rel_error:.2%}, max {self.max_rel_error:.2%}",
            f"Pearson of entries: {self.pearson_entries:.5f}",
            f"Spearman of totals over {self.policies} random mixed policies (seed {self.seed}): "
            f"{self.spearman_policies:.5f} (max relative error of a total {self.max_policy_rel_error:.2%})",
        ]
        for bits, (ours, ref) in sorted(self.uniform_totals.items(), reverse=True):
            out.append(f"uniform {bits}/{bits} total: ours {ours:,.0f}, reference {ref:,.0f} "
                       f"({(ours - ref) / ref:+.2%})")
        return out


def compare_tables(ours: np.ndarray, reference: np.ndarray, policies: int = 1000, seed: int = 0,
                   min_bits: int = 1) -> TableComparison:
    """Compare two [L, W, A] tables entry by entry and on totals of random mixed policies."""
    ours = np.asarray(ours, dtype=np.float64)
    reference = np.asarray(reference, dtype=np.float64)
    if ours.ndim != 3 or reference.ndim != 3 or ours.shape[0] != reference.shape[0]:
        raise DataFormatError(f"tables must be [layer, w_bits, a_bits] with the same layer count; "
                              f"got {ours.shape} and {reference.shape}")
    w_n = min(ours.shape[1], reference.shape[1])
    a_n = min(ours.shape[2], reference.shape[2])
    ours, reference = ours[:, :w_n, :a_n], reference[:, :w_n, :a_n]
    lo = min_bits - 1
    rel = relative_error(ours[:, lo:, lo:], reference[:, lo:, lo:])
    w, a = random_policies(ours.shape[0], policies, min_bits, min(w_n, a_n), seed)
    ours_tot = layer_costs(ours, w, a).sum(axis=1)
    ref_tot = layer_costs(reference, w, a).sum(axis=1)
    uniform = {b: (float(cost_at(ours, slice(None), b, b).sum()), float(cost_at(reference, slice(None), b, b).sum()))
               for b in (8, 4, 2) if min_bits <= b <= min(w_n, a_n)}
    return TableComparison(
        median_rel_error=float(np.median(rel)), p95_rel_error=float(np.percentile(rel, 95)),
        max_rel_error=float(rel.max()),
        pearson_entries=pearson(ours[:, lo:, lo:], reference[:, lo:, lo:]),
        spearman_policies=spearman(ours_tot, ref_tot),
        max_policy_rel_error=float(relative_error(ours_tot, ref_tot).max()),
        uniform_totals=uniform, policies=policies, seed=seed)
