"""The policies every fine-tune compares (uniform, largest uniform within budget) and their costs."""

from __future__ import annotations

import logging
import math
from typing import Any

import numpy as np

from haq_rl.quant import QuantPolicy
from haq_rl.task import budget as budget_rules
from haq_rl.task.budget import is_within_budget, pinned_layers, reference_cost, uniform_bits
from haq_rl.task.task import Task

logger = logging.getLogger(__name__)

def _pinned(task: Task) -> np.ndarray:
    return pinned_layers(len(task.layers), task.spec.pin_first_last)


def uniform_policy(task: Task, bits: int) -> QuantPolicy:
    """Uniform ``bits``/``bits`` with the env's conventions (what the search's uniform baseline scores).

    Layers the env pins (first and last) stay at 8 bits; a weight-only objective (size)
    keeps activations at 8 bits. ``bits=8`` is therefore all 8/8.
    """
    w, a = uniform_bits(_pinned(task), task.spec.weight_only, bits)
    return QuantPolicy.from_arrays(task.layer_names, w, a, name=f"uniform {bits}/{bits}")


def _finite_or_none(value: float) -> float | None:
    # JSON has no NaN: profiles without an energy model report null instead.
    return float(value) if math.isfinite(value) else None


def policy_costs(task: Task, policy: QuantPolicy) -> dict[str, Any]:
    """Latency, energy, size, BOPs and the objective's cost ratio of ``policy`` (cost table)."""
    w = policy.w_bits
    a = policy.a_bits
    index = (np.arange(len(w)), w - 1, a - 1)
    table = task.cost_table
    cost = float(table.policy_cost(w, a, task.spec.objective))
    ratio = cost / reference_cost(table, task.spec.objective)
    return {
        "latency_ms": _finite_or_none(float(table.latency_ms[index].sum())),
        "energy_uj": _finite_or_none(float(table.energy_uj[index].sum())),
        "size_bytes": _finite_or_none(float(table.size_bytes[index].sum())),
        "bops": _finite_or_none(float(table.bops[index].sum())),
        "cost_ratio": ratio,
        "within_budget": is_within_budget(ratio, task.spec.budget),
    }


def largest_uniform_within_budget(task: Task) -> int | None:
    """The most bits B whose uniform B/B policy meets the task's budget (None if none does)."""
    spec = task.spec
    return budget_rules.largest_uniform_within_budget(
        task.cost_table, spec.objective, spec.budget, _pinned(task), spec.weight_only, spec.min_bits, spec.max_bits)


def ratio_or_none(value: float | None, reference: float | None) -> float | None:
    if value is None or reference is None or reference == 0:
        return None
    return value / reference
