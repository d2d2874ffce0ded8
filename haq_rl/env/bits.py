"""Mapping between continuous actions in [-1, 1] and integer bit widths.

The interval [-1, 1] is cut into ``max_bits - min_bits + 1`` bins of equal width; bin
``i`` (from the left) means ``min_bits + i`` bits. The inverse maps bits to the centre
of their bin, which is what the agent stores when the action wall changed its choice.
"""

from __future__ import annotations

import numpy as np


def action_to_bits(action: np.ndarray | float, min_bits: int, max_bits: int) -> np.ndarray:
    """Equal-width bins over [-1, 1]; values outside are clipped first."""
    levels = max_bits - min_bits + 1
    unit = (np.clip(np.asarray(action, dtype=np.float64), -1.0, 1.0) + 1.0) / 2.0
    index = np.minimum(np.floor(unit * levels), levels - 1).astype(np.int64)
    return min_bits + index


def bits_to_action(bits: np.ndarray | int, min_bits: int, max_bits: int) -> np.ndarray:
    """Centre of the bin of ``bits`` (the inverse of :func:`action_to_bits`)."""
    levels = max_bits - min_bits + 1
    index = np.asarray(bits, dtype=np.float64) - min_bits
    return (-1.0 + (index + 0.5) * 2.0 / levels).astype(np.float32)
