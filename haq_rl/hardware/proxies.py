"""Hardware-free proxies: bit operations (BOPs) and model size.

- BOPs = MACs * w * a (Baskin et al., "UNIQ", 2018; used by HAQ-style baselines).
  NNCF's "bit complexity" = FLOPs * max(w, a) is a variant not used here.
- Size = weights * w bits (+ a k-means codebook of 2**w entries of 32 bits per layer,
  as in Deep Compression / HAQ's k-means quantization).

A measured reality check (HAWQ-V3, ResNet-18 on a T4 GPU): int8 -> int4 speeds layers up
only 1.32-2.03x while BOPs predicts 4x, so proxies rank policies but do not time them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from haq_rl.hardware.layer_cost import LayerCost, bit_grid, nan_like
from haq_rl.hardware.layer_spec import LayerSpec


def bops(spec: LayerSpec, w_bits: np.ndarray | int, a_bits: np.ndarray | int) -> np.ndarray:
    """Bit operations of the whole batch: MACs * w * a."""
    w, a = bit_grid(w_bits, a_bits)
    return float(spec.macs) * w * a


def size_bits(spec: LayerSpec, w_bits: np.ndarray | int, kmeans_codebooks: bool = False) -> np.ndarray:
    """Bits to store the layer's weights: count * w (+ 2**w * 32 for a k-means codebook)."""
    w = np.asarray(w_bits, dtype=np.float64)
    bits = float(spec.weight_count) * w
    if kmeans_codebooks:
        bits = bits + 2.0 ** w * 32
    return bits


def proxy_cost(spec: LayerSpec, w_bits: np.ndarray | int, a_bits: np.ndarray | int,
               params: Mapping[str, Any]) -> LayerCost:
    """Proxies have no time or energy: cycles, latency and energy are NaN, bound 'proxy'."""
    w, _ = bit_grid(w_bits, a_bits)
    return LayerCost(cycles=nan_like(w.shape), latency_ms=nan_like(w.shape),
                     energy_uj=nan_like(w.shape), bound=np.full(w.shape, "proxy"))
