"""The one place the cost arrays' layout is indexed: ``array[layer, w_bits - 1, a_bits - 1]``.

Every per-layer cost array (a :class:`~haq_rl.hardware.CostTable` objective, a published
lookup table) holds layer ``i`` at ``w`` weight and ``a`` activation bits at
``[i, w - 1, a - 1]``; these two functions are the only code that writes that index.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def cost_at(array: np.ndarray, layer: Any, w_bits: Any, a_bits: Any) -> Any:
    """The entry (or entries, for index arrays) of ``layer`` at ``w_bits`` / ``a_bits``."""
    return array[layer, np.asarray(w_bits) - 1, np.asarray(a_bits) - 1]


def layer_costs(array: np.ndarray, w_bits: Any, a_bits: Any) -> np.ndarray:
    """Every layer's cost under a policy (``[L]`` bits -> ``[L]``; ``[P, L]`` -> ``[P, L]``)."""
    return cost_at(array, np.arange(array.shape[0]), w_bits, a_bits)  # type: ignore[no-any-return]
