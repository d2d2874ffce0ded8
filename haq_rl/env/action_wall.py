"""HAQ's budget enforcement ("action wall").

After the agent has chosen bits for every layer, the wall lowers bits until the
policy's cost is within budget: it sweeps from the last layer to the first, lowering
the activation bits and then the weight bits of a layer by one bit each, and checks
the budget after every single-bit change (Wang et al., CVPR 2019, Sec. 3.3; the
``_final_action_wrapper`` of their code). Because it stops at the first change that
meets the budget, the wall is minimal: undoing its last change breaks the budget.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from haq_rl.errors import BudgetError

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
