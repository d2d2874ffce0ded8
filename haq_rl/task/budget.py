"""The budget rules, in one place: pinned layers, the 8/8 reference, uniform policies,
the within-budget tolerance, the largest uniform width within budget and the room check.

A budget is always a ratio of the cost of the uniform 8/8 policy (HAQ's "preserve
ratio"); absolute costs are named ``*_cost``. Pure numpy over a
:class:`~haq_rl.hardware.CostTable`: no torch, no gymnasium.
"""

from __future__ import annotations

import numpy as np

from haq_rl.hardware import CostTable

#: Bits of the reference policy and of pinned layers (HAQ keeps the first and last at 8).
REFERENCE_BITS = 8
#: A policy is within budget when cost / reference <= budget + BUDGET_TOLERANCE.
BUDGET_TOLERANCE = 1e-9
#: Budgets closer than this fraction of (1 - minimum ratio) to the minimum ratio leave
#: no room: nearly every policy the wall admits sits at minimum bits.
ROOM_FRACTION = 0.10


def pinned_layers(num_layers: int, pin_first_last: bool) -> np.ndarray:
    """Boolean mask of the layers held at :data:`REFERENCE_BITS` (the first and the last)."""
    pinned = np.zeros(num_layers, dtype=bool)
    if pin_first_last and num_layers > 0:
        pinned[[0, num_layers - 1]] = True
    return pinned


def uniform_bits(pinned: np.ndarray, weight_only: bool, bits: int) -> tuple[np.ndarray, np.ndarray]:
    """Uniform ``bits``/``bits`` for the free layers; pinned layers (and, for weight-only
    objectives, every activation) stay at :data:`REFERENCE_BITS`."""
    w = np.where(pinned, REFERENCE_BITS, bits).astype(np.int64)
    a = np.where(pinned | weight_only, REFERENCE_BITS, bits).astype(np.int64)
    return w, a


def reference_cost(cost_table: CostTable, objective: str) -> float:
    """Cost of the uniform 8/8 policy: the denominator of every budget ratio."""
    eights = np.full(cost_table.num_layers, REFERENCE_BITS, dtype=np.int64)
    return float(cost_table.policy_cost(eights, eights, objective))


def cost_ratio(cost_table: CostTable, objective: str, w_bits: np.ndarray, a_bits: np.ndarray) -> float:
    """Cost of a policy over the 8/8 reference."""
    return float(cost_table.policy_cost(w_bits, a_bits, objective)) / reference_cost(cost_table, objective)


def is_within_budget(ratio: float, budget: float) -> bool:
    """The one tolerance every method, the fine-tune and the report use."""
    return bool(ratio <= budget + BUDGET_TOLERANCE)


def minimum_ratio(cost_table: CostTable, objective: str, pinned: np.ndarray, min_bits: int,
                  weight_only: bool) -> float:
    """The lowest achievable cost ratio: every free layer at ``min_bits``."""
    w, a = uniform_bits(pinned, weight_only, min_bits)
    return cost_ratio(cost_table, objective, w, a)


def largest_uniform_within_budget(cost_table: CostTable, objective: str, budget: float, pinned: np.ndarray,
                                  weight_only: bool, min_bits: int, max_bits: int) -> int | None:
    """The most bits B whose uniform B/B policy meets ``budget`` (None if none does)."""
    for bits in range(max_bits, min_bits - 1, -1):
        w, a = uniform_bits(pinned, weight_only, bits)
        if is_within_budget(cost_ratio(cost_table, objective, w, a), budget):
            return bits
    return None


def room_warning(budget: float, minimum: float, objective: str) -> str | None:
    """A warning when ``budget`` leaves almost no room above the minimum ratio, else None.

    Within :data:`ROOM_FRACTION` of the gap between the minimum achievable ratio and 1,
    the action wall pushes nearly every policy down to the minimum bits.
    """
    if budget - minimum >= ROOM_FRACTION * (1.0 - minimum):
        return None
    return (f"budget {budget:g} of the 8/8 {objective} is within {ROOM_FRACTION:.0%} of the gap between "
            f"the minimum achievable ratio {minimum:.4f} and 1: nearly every policy will sit at the "
            f"minimum bits (a budget of at least {minimum + ROOM_FRACTION * (1.0 - minimum):.3f} leaves room)")
