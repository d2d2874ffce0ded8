"""The policies every fine-tune compares (uniform, largest uniform within budget) and their costs."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from haq_rl.fileio import finite_or_none
from haq_rl.quant import QuantPolicy
from haq_rl.task import budget as budget_rules
from haq_rl.task.budget import (
    cost_ratio,
    is_within_budget,
    meets_extra_budgets,
    pinned_layers,
    policy_metrics,
    uniform_bits,
)
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


def policy_costs(task: Task, policy: QuantPolicy) -> dict[str, Any]:
    """Latency, energy, size, BOPs and the objective's cost ratio of ``policy`` (cost table)."""
    ratio = cost_ratio(task.cost_table, task.spec.objective, policy.w_bits, policy.a_bits)
    metrics = policy_metrics(task.cost_table, policy.w_bits, policy.a_bits)
    return {
        **{name: finite_or_none(value) for name, value in metrics.items()},
        "cost_ratio": ratio,
        "within_budget": is_within_budget(ratio, task.spec.budget) and meets_extra_budgets(
            task.cost_table, task.spec.extra_budgets, policy.w_bits, policy.a_bits),
    }


def largest_uniform_within_budget(task: Task) -> int | None:
    """The most bits B whose uniform B/B policy meets the task's budget (None if none does)."""
    spec = task.spec
    return budget_rules.largest_uniform_within_budget(
        task.cost_table, spec.objective, spec.budget, _pinned(task), spec.weight_only, spec.min_bits, spec.max_bits,
        spec.extra_budgets)


def ratio_or_none(value: float | None, reference: float | None) -> float | None:
    if value is None or reference is None or reference == 0:
        return None
    return value / reference
