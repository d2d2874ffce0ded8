"""The result every cost model returns for one layer over a grid of bit widths."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class LayerCost:
    """Cost of one layer, broadcast over the (w_bits, a_bits) arrays it was asked for.

    ``cycles``/``latency_ms`` are for the whole batch of the LayerSpec; ``energy_uj`` is
    NaN where the model has no energy figure; ``bound`` names the limiting stage
    ('weight-fetch', 'activation-fetch', 'compute', 'memory', 'measured', 'proxy').
    """

    cycles: np.ndarray
    latency_ms: np.ndarray
    energy_uj: np.ndarray
    bound: np.ndarray


def nan_like(shape: tuple[int, ...]) -> np.ndarray:
    return np.full(shape, np.nan)


def bit_grid(w_bits: np.ndarray | int, a_bits: np.ndarray | int) -> tuple[np.ndarray, np.ndarray]:
    """Broadcast weight and activation bits to one common float shape."""
    w, a = np.broadcast_arrays(np.asarray(w_bits, dtype=np.float64), np.asarray(a_bits, dtype=np.float64))
    return w, a
