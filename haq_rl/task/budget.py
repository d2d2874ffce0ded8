"""The budget rules, in one place: pinned layers, the 8/8 reference, uniform policies,
the within-budget tolerance, the largest uniform width within budget, the room check,
HAQ's action wall and a policy's metrics from the cost table.

A budget is always a ratio of the cost of the uniform 8/8 policy (HAQ's "preserve
ratio"); absolute costs are named ``*_cost``. Pure numpy over a
:class:`~haq_rl.hardware.CostTable`: no torch, no gymnasium.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from haq_rl.errors import BudgetError
from haq_rl.hardware import CostTable
from haq_rl.hardware.cost_index import layer_costs

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


def meets_extra_budgets(cost_table: CostTable, extra_budgets: Sequence[tuple[str, float]],
                        w_bits: np.ndarray, a_bits: np.ndarray) -> bool:
    """Whether a policy meets every further ``(objective, budget)`` constraint."""
    return all(is_within_budget(cost_ratio(cost_table, objective, w_bits, a_bits), budget)
               for objective, budget in extra_budgets)


def largest_uniform_within_budget(cost_table: CostTable, objective: str, budget: float, pinned: np.ndarray,
                                  weight_only: bool, min_bits: int, max_bits: int,
                                  extra_budgets: Sequence[tuple[str, float]] = ()) -> int | None:
    """The most bits B whose uniform B/B policy meets ``budget`` and every extra budget
    (None if none does)."""
    for bits in range(max_bits, min_bits - 1, -1):
        w, a = uniform_bits(pinned, weight_only, bits)
        if is_within_budget(cost_ratio(cost_table, objective, w, a), budget) and meets_extra_budgets(
                cost_table, extra_budgets, w, a):
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


def policy_metrics(cost_table: CostTable, w_bits: np.ndarray, a_bits: np.ndarray) -> dict[str, float]:
    """Latency (ms), energy (uJ), size (bytes) and BOPs of a policy from the cost table.

    NaN where the profile has no model for a metric (e.g. the energy of a proxy).
    """
    return {
        "latency_ms": float(layer_costs(cost_table.latency_ms, w_bits, a_bits).sum()),
        "energy_uj": float(layer_costs(cost_table.energy_uj, w_bits, a_bits).sum()),
        "size_bytes": float(layer_costs(cost_table.size_bytes, w_bits, a_bits).sum()),
        "bops": float(layer_costs(cost_table.bops, w_bits, a_bits).sum()),
    }


# --------------------------------------------------------------------------- action wall
# HAQ's budget enforcement (Wang et al., CVPR 2019, Sec. 3.3; the ``_final_action_wrapper``
# of their code): after the agent has chosen bits for every layer, sweep from the last
# layer to the first, lowering the activation bits and then the weight bits of a layer by
# one bit each, and check the budget after every single-bit change. Because it stops at
# the first change that meets the budget, the wall is minimal: undoing its last change
# breaks the budget.

CostFunction = Callable[[np.ndarray, np.ndarray], float]


def enforce_budget(
    w_bits: np.ndarray,
    a_bits: np.ndarray,
    cost: CostFunction,
    budget: float,
    min_bits: int,
    frozen: Sequence[bool] | np.ndarray,
    lower_activations: bool = True,
) -> tuple[np.ndarray, np.ndarray, int]:
    """Lower bits until ``cost(w, a) <= budget``; returns new arrays and the bits lowered.

    ``frozen[i]`` marks layers the wall must not touch (pinned to 8 bits).
    ``lower_activations=False`` is for weight-only objectives such as model size.
    Raises :class:`BudgetError` when even the all-minimum policy is over budget.
    """
    w = np.array(w_bits, dtype=np.int64)
    a = np.array(a_bits, dtype=np.int64)
    lowered = 0
    if cost(w, a) <= budget:
        return w, a, lowered
    layer_order = [i for i in reversed(range(len(w))) if not frozen[i]]
    while True:
        changed = False
        for i in layer_order:
            arrays = (a, w) if lower_activations else (w,)
            for bits in arrays:
                if bits[i] > min_bits:
                    bits[i] -= 1
                    lowered += 1
                    changed = True
                    if cost(w, a) <= budget:
                        return w, a, lowered
        if not changed:
            raise BudgetError(
                f"budget {budget:.6g} cannot be met: the cost at minimum bits is {cost(w, a):.6g}")
