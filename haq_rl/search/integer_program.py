"""The bit allocation as an integer program (HAWQ-V3, Yao et al., ICML 2021, Eq. 9), solved by HiGHS.

One binary variable per (layer, weight bits, activation bits) choice:

    minimise    sum_l  Omega_w(l, w) + Omega_a(l, a)     (the chosen choice of each layer)
    subject to  sum_l  cost(l, w, a) <= budget            (the cost table of the objective)
                sum_l  cost_k(l, w, a) <= budget_k        (each extra constraint, if any)
                exactly one choice per layer

Pinned layers are fixed at their bits and their cost is taken off the budget. With
``tied`` activations the choices are ``w = a`` (HAWQ-V3's setting); otherwise every pair.
For weight-only objectives (size) activations stay at their given bits. The program is
solved with ``scipy.optimize.milp`` (the HiGHS branch and bound).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from haq_rl.errors import BudgetError
from haq_rl.hardware.cost_index import cost_at


def allocate_bits(weight_loss: np.ndarray, activation_loss: np.ndarray, cost: np.ndarray, budget: float,
                  *, bits: tuple[int, ...], pinned: np.ndarray, pinned_bits: int = 8, tied: bool = True,
                  weight_only: bool = False,
                  extra_constraints: Sequence[tuple[np.ndarray, float]] = ()) -> tuple[np.ndarray, np.ndarray]:
    """Per-layer (w_bits, a_bits) that minimise the summed sensitivity within ``budget``.

    Arguments:
        weight_loss / activation_loss: ``[layers, len(bits)]`` expected loss increases.
        cost: the objective's cost table ``[layers, 8, 8]`` (index ``w - 1``, ``a - 1``).
        budget: the allowed total cost (absolute, the same units as ``cost``).
        bits: the bit widths of the columns of the loss arrays.
        pinned: layers held at ``pinned_bits`` (weights and activations).
        tied: only ``w == a`` choices.
        weight_only: activations stay at ``pinned_bits``; only weights are chosen.
        extra_constraints: further ``(cost table, budget)`` pairs the allocation meets too.

    Raises BudgetError when no choice meets the budget.
    """
    from scipy.optimize import Bounds, LinearConstraint, milp

    layers = len(pinned)

    def fixed_cost(table: np.ndarray) -> float:
        return float(sum(cost_at(table, i, pinned_bits, pinned_bits) for i in range(layers) if pinned[i]))

    choices: list[tuple[int, int, int]] = []  # (layer, w, a)
    for layer in range(layers):
        if pinned[layer]:
            continue
        for w in bits:
            a_options = [pinned_bits] if weight_only else ([w] if tied else list(bits))
            for a in a_options:
                choices.append((layer, w, a))
    column = {b: j for j, b in enumerate(bits)}
    objective = np.array([weight_loss[i, column[w]] + (0.0 if weight_only else activation_loss[i, column[a]])
                          for i, w, a in choices])
    def choice_costs(table: np.ndarray) -> np.ndarray:
        return np.array([cost_at(table, i, w, a) for i, w, a in choices])

    free = [i for i in range(layers) if not pinned[i]]
    one_each = np.zeros((len(free), len(choices)))
    row_of = {layer: r for r, layer in enumerate(free)}
    for j, (i, _, _) in enumerate(choices):
        one_each[row_of[i], j] = 1.0
    # Scale the objective so HiGHS' tolerances do not drown sensitivities of ~1e-6.
    scale = float(np.abs(objective).max()) or 1.0
    result = milp(
        c=objective / scale,
        constraints=[LinearConstraint(choice_costs(cost)[None, :], -np.inf, budget - fixed_cost(cost)),
                     *(LinearConstraint(choice_costs(table)[None, :], -np.inf, limit - fixed_cost(table))
                       for table, limit in extra_constraints),
                     LinearConstraint(one_each, 1.0, 1.0)],
        integrality=np.ones(len(choices)),
        bounds=Bounds(0.0, 1.0),
    )
    if result.x is None:
        raise BudgetError(f"the integer program found no bit allocation within budget {budget:g} "
                          f"({result.message})")
    w_bits = np.full(layers, pinned_bits, dtype=np.int64)
    a_bits = np.full(layers, pinned_bits, dtype=np.int64)
    for chosen in np.flatnonzero(result.x > 0.5):
        layer, w, a = choices[int(chosen)]
        w_bits[layer], a_bits[layer] = w, a
    return w_bits, a_bits
