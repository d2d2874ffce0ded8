"""The one scoring function: wall a policy under the budget, evaluate it, describe it.

``QuantizationEnv.step`` ends every episode with :meth:`PolicyScorer.score`, and every
baseline (uniform, greedy, integer program, TPE) scores its policies with the same call,
so every method is judged by the same wall, evaluator, reward and cost table.
"""

from __future__ import annotations

import copy
import logging
import warnings
from collections.abc import Mapping
from typing import Any

import numpy as np

from haq_rl.errors import BudgetError, BudgetWarning, ConfigError, UnknownNameError, check_budget
from haq_rl.hardware import CostTable
from haq_rl.hardware.cost_index import cost_at
from haq_rl.task.budget import (
    REFERENCE_BITS,
    enforce_budget,
    is_within_budget,
    largest_uniform_within_budget,
    pinned_layers,
    policy_metrics,
    room_warning,
    uniform_bits,
)
from haq_rl.task.evaluator import PolicyEvaluator, ScoresSource
from haq_rl.task.sources import reward_source_entry
from haq_rl.task.spec import OBJECTIVES, REWARD_METRICS, is_weight_only

logger = logging.getLogger(__name__)

# HAQ's reward scale: R = lambda * (acc_quant - acc_ref), accuracies in percent.
REWARD_LAMBDA = 0.1


class PolicyScorer:
    """Scores (weight bits, activation bits) policies of one task under one budget.

    Arguments:
        evaluator: measures accuracy and KL on the reward split.
        cost_table: the layers' costs; its layers must be the evaluator's.
        objective: ``latency``, ``energy``, ``size`` or ``bops``.
        budget: allowed cost as a ratio of the uniform 8/8 cost, in (0, 1].
        min_bits / max_bits: the bit range (the wall never goes below ``min_bits``).
        pin_first_last: keep the first and last layers at 8/8 bits.
        reward_metric: ``accuracy`` (HAQ: ``0.1 * (acc - acc_float)``) or ``kl``
            (``-KL(p_float || p_quant)``).
        extra_budgets: further ``{objective: budget}`` constraints every walled policy
            meets too (e.g. ``{"energy": 0.6}`` beside a latency budget).

    Raises BudgetError when even the all-minimum policy is over budget, and warns
    (:class:`~haq_rl.errors.BudgetWarning`) when the budget leaves almost no room.
    """

    def __init__(self, evaluator: ScoresSource, cost_table: CostTable, *, objective: str = "latency",
                 budget: float = 0.5, min_bits: int = 2, max_bits: int = 8, pin_first_last: bool = True,
                 reward_metric: str = "accuracy", extra_budgets: Mapping[str, float] | None = None) -> None:
        if objective not in OBJECTIVES:
            raise UnknownNameError("objective", objective, OBJECTIVES)
        if reward_metric not in REWARD_METRICS:
            raise UnknownNameError("reward_metric", reward_metric, REWARD_METRICS)
        check_budget("budget", budget)
        if not 1 <= min_bits <= max_bits <= 8:
            raise ConfigError(f"bit range {min_bits}..{max_bits} invalid; allowed 1 <= min_bits <= max_bits <= 8")
        if list(cost_table.layer_names) != list(evaluator.layer_names):
            raise ConfigError("cost table and evaluator describe different layers")
        profile_min = int(getattr(cost_table, "min_bits", 1))
        if min_bits < profile_min:
            raise ConfigError(f"min_bits={min_bits} is below what hardware profile supports ({profile_min})")
        self.evaluator = evaluator
        self.cost_table = cost_table
        self.objective = objective
        self.budget_ratio = float(budget)
        self.min_bits = min_bits
        self.max_bits = max_bits
        self.pin_first_last = pin_first_last
        self.reward_metric = reward_metric
        self.layer_names = list(cost_table.layer_names)
        self.extra_budgets: dict[str, float] = dict(extra_budgets or {})
        for name, ratio in self.extra_budgets.items():
            if name not in OBJECTIVES or name == objective:
                raise ConfigError(f"extra budget objective {name!r} must be one of {', '.join(OBJECTIVES)} "
                                  f"other than {objective}")
            check_budget(f"extra budget {name}", ratio)
        self.objectives = (objective, *self.extra_budgets)
        self.weight_only = is_weight_only(self.objectives)
        self.pinned = pinned_layers(len(self.layer_names), pin_first_last)
        self._layer_index = np.arange(len(self.layer_names))
        self._cost_arrays = {name: np.asarray(cost_table.objective(name), dtype=np.float64)
                             for name in self.objectives}
        self._cost_array = self._cost_arrays[objective]
        eights = np.full(len(self.layer_names), REFERENCE_BITS)
        #: The 8/8 cost of every constrained objective (the denominators of their ratios).
        self.reference_costs = {name: self.objective_cost(name, eights, eights) for name in self.objectives}
        self.reference_cost = self.reference_costs[objective]
        #: The budget as an absolute cost (``budget_ratio * reference_cost``).
        self.budget_cost = self.budget_ratio * self.reference_cost
        self._check_feasible()

    def at_budget(self, budget: float) -> PolicyScorer:
        """The same scorer (shared evaluator and its memo) under another budget of the objective.

        Raises BudgetError when ``budget`` is infeasible, like the constructor.
        """
        check_budget("budget", budget)
        other = copy.copy(self)
        other.budget_ratio = float(budget)
        other.budget_cost = other.budget_ratio * other.reference_cost
        other._check_feasible()
        return other

    # ------------------------------------------------------------------ costs
    def cost(self, w_bits: np.ndarray, a_bits: np.ndarray) -> float:
        """Objective cost of a whole policy: the action wall's hot path, so a bare lookup in the
        validated objective array (``CostTable.policy_cost`` checks its input every call)."""
        return float(cost_at(self._cost_array, self._layer_index, w_bits, a_bits).sum())

    def objective_cost(self, objective: str, w_bits: np.ndarray, a_bits: np.ndarray) -> float:
        """Cost of a policy in one of the constrained objectives."""
        table = self._cost_arrays[objective]
        return float(cost_at(table, self._layer_index, w_bits, a_bits).sum())

    def cost_ratios(self, w_bits: np.ndarray, a_bits: np.ndarray) -> dict[str, float]:
        """Every constrained objective's cost over its 8/8 cost."""
        return {name: self.objective_cost(name, w_bits, a_bits) / self.reference_costs[name]
                for name in self.objectives}

    @property
    def wall_budget(self) -> float:
        """What :meth:`wall_cost` must not exceed: the budget cost, or 1 with extra budgets."""
        return 1.0 if self.extra_budgets else self.budget_cost

    def wall_cost(self, w_bits: np.ndarray, a_bits: np.ndarray) -> float:
        """What the action wall lowers until it is within :attr:`wall_budget`.

        One budget: the objective's cost. Several: the largest cost-over-budget of them, so
        the wall stops exactly when every constraint holds.
        """
        if not self.extra_budgets:
            return self.cost(w_bits, a_bits)
        loads = [self.cost(w_bits, a_bits) / self.budget_cost]
        loads += [self.objective_cost(name, w_bits, a_bits) / (ratio * self.reference_costs[name])
                  for name, ratio in self.extra_budgets.items()]
        return max(loads)

    def is_within(self, cost_ratio: float, extra_ratios: Mapping[str, float] | None = None,
                  budget: float | None = None) -> bool:
        """Whether a policy with these ratios meets the budget (``budget`` instead of this
        scorer's) and every extra budget."""
        if not is_within_budget(cost_ratio, self.budget_ratio if budget is None else budget):
            return False
        extra_ratios = extra_ratios or {}
        return all(is_within_budget(extra_ratios[name], ratio) for name, ratio in self.extra_budgets.items())

    def uniform(self, bits: int) -> tuple[np.ndarray, np.ndarray]:
        """Uniform ``bits`` on the free layers (pinned layers and weight-only activations at 8)."""
        return uniform_bits(self.pinned, self.weight_only, bits)

    def largest_uniform(self) -> int | None:
        """The most bits whose uniform policy (:meth:`uniform`) meets the budget(s), or None."""
        return largest_uniform_within_budget(self.cost_table, self.objective, self.budget_ratio, self.pinned,
                                             self.weight_only, self.min_bits, self.max_bits,
                                             tuple(self.extra_budgets.items()))

    def minimum_cost(self) -> float:
        """Cost with every free layer at the minimum bits (activations kept for weight-only)."""
        return self.cost(*self.uniform(self.min_bits))

    def _check_feasible(self) -> None:
        minimum = self.minimum_cost() / self.reference_cost
        if not is_within_budget(minimum, self.budget_ratio):
            raise BudgetError(
                f"budget {self.budget_ratio:g} of the 8/8 {self.objective} is infeasible: the minimum "
                f"achievable ratio with bits >= {self.min_bits}"
                f"{' and first/last layers pinned to 8 bits' if self.pin_first_last else ''} "
                f"is {minimum:.4f}")
        warning = room_warning(self.budget_ratio, minimum, self.objective)
        if warning is not None:
            warnings.warn(warning, BudgetWarning, stacklevel=4)
        low_w, low_a = self.uniform(self.min_bits)
        for name, ratio in self.extra_budgets.items():
            extra_minimum = self.objective_cost(name, low_w, low_a) / self.reference_costs[name]
            if not is_within_budget(extra_minimum, ratio):
                raise BudgetError(f"extra budget {ratio:g} of the 8/8 {name} is infeasible: the minimum "
                                  f"achievable ratio with bits >= {self.min_bits} is {extra_minimum:.4f}")

    def apply_wall(self, w_bits: np.ndarray, a_bits: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
        """Pin the pinned layers to 8 bits, then lower bits until the budget is met."""
        w = np.where(self.pinned, REFERENCE_BITS, w_bits)
        a = np.where(self.pinned | self.weight_only, REFERENCE_BITS, a_bits)
        return enforce_budget(w, a, self.wall_cost, self.wall_budget, self.min_bits,
                              frozen=self.pinned, lower_activations=not self.weight_only)

    def metrics(self, w_bits: np.ndarray, a_bits: np.ndarray) -> dict[str, float]:
        """Latency, energy, size and BOPs of a policy from the cost table."""
        return policy_metrics(self.cost_table, w_bits, a_bits)

    # ------------------------------------------------------------------ scoring
    def score(self, w_bits: np.ndarray, a_bits: np.ndarray, enforce: bool = True) -> dict[str, Any]:
        """Wall (when ``enforce``), evaluate and describe a policy.

        Returns ``reward``, ``accuracy``, ``kl``, ``float_accuracy``, ``policy`` (layer ->
        (w, a)), ``w_bits``, ``a_bits``, ``proposed_w_bits``, ``proposed_a_bits``,
        ``bits_lowered``, ``cost``, ``cost_ratio``, ``budget_ratio``, ``latency_ms``,
        ``energy_uj``, ``size_bytes`` and ``bops``; with extra budgets also ``cost_ratios``
        (objective -> ratio to 8/8, every constrained objective); with ``reward_source:
        tabulated`` also ``reward_from`` (``"table"`` or ``"predictor"``).
        """
        proposed_w = np.asarray(w_bits, dtype=np.int64).copy()
        proposed_a = np.asarray(a_bits, dtype=np.int64).copy()
        if enforce:
            w, a, lowered = self.apply_wall(proposed_w, proposed_a)
        else:
            w, a, lowered = proposed_w.copy(), proposed_a.copy(), 0
        scores = self.evaluator.scores(w, a)
        if self.reward_metric == "kl":
            reward = -scores.kl
        else:
            reward = REWARD_LAMBDA * (scores.accuracy - self.evaluator.float_accuracy)
        cost = self.cost(w, a)
        extra: dict[str, Any] = {"cost_ratios": self.cost_ratios(w, a)} if self.extra_budgets else {}
        if scores.origin:  # the tabulated reward says whether the table or its predictor answered
            extra["reward_from"] = scores.origin
        return {
            "reward": reward,
            "accuracy": scores.accuracy,
            "kl": scores.kl,
            "float_accuracy": self.evaluator.float_accuracy,
            "policy": {name: (int(wb), int(ab)) for name, wb, ab in zip(self.layer_names, w, a, strict=True)},
            "w_bits": w.copy(),
            "a_bits": a.copy(),
            "proposed_w_bits": proposed_w,
            "proposed_a_bits": proposed_a,
            "bits_lowered": lowered,
            "cost": cost,
            "cost_ratio": cost / self.reference_cost,
            "budget_ratio": self.budget_ratio,
            **self.metrics(w, a),
            **extra,
        }

    def prefetch(self, policies: list[tuple[np.ndarray, np.ndarray]], enforce: bool = True) -> None:
        """Wall (when ``enforce``) and evaluate these policies as one batch, in parallel when the
        evaluator has a pool; the :meth:`score` calls that follow for them only look them up."""
        if not self.evaluator.parallel:
            return
        walled = [self.apply_wall(np.asarray(w), np.asarray(a))[:2] if enforce else (w, a) for w, a in policies]
        self.evaluator.prefetch(walled)

    def score_many(self, policies: list[tuple[np.ndarray, np.ndarray]], enforce: bool = True) -> list[dict[str, Any]]:
        """:meth:`score` of every policy, evaluated as one batch (:meth:`prefetch`), in input order."""
        self.prefetch(policies, enforce)
        return [self.score(w, a, enforce) for w, a in policies]

    @classmethod
    def from_task(cls, task: Any, evaluator: ScoresSource | None = None) -> PolicyScorer:
        """The scorer of a :class:`~haq_rl.task.Task` under its spec's budget and reward.

        ``evaluator`` None builds the post-training one; :func:`scorer_for_task`
        passes the one of the spec's reward source.
        """
        spec = task.spec
        if evaluator is None:
            evaluator = post_training_evaluator(task)
        logger.info("scorer for %s: %d layers, float reward accuracy %.2f%%",
                    spec.id, len(task.layers), evaluator.float_accuracy)
        return cls(evaluator, task.cost_table, objective=spec.objective, budget=spec.budget,
                   min_bits=spec.min_bits, max_bits=spec.max_bits, pin_first_last=spec.pin_first_last,
                   reward_metric=spec.reward_metric, extra_budgets=dict(spec.extra_budgets))


def post_training_evaluator(task: Any, progress: bool = False) -> PolicyEvaluator:
    """``reward_source: post_training``'s evaluator: the float weights quantized as they are,
    per policy (``progress`` unused: it builds in seconds)."""
    from haq_rl.models import quantizable_layers

    spec = task.spec
    return PolicyEvaluator(
        task.model,
        [name for name, _ in quantizable_layers(task.model)],
        reward_batches=task.reward_batches(),
        calibration_inputs=task.calibration_inputs(),
        quant_config=task.quant_config,
        device=task.device,
        finetune_batches=task.finetune_batches(),
        finetune_steps=spec.finetune_steps,
        finetune_lr=spec.finetune_lr,
        bn_batches=task.bn_inputs(),
        metric=task.metric,
    )


def scorer_for_task(task: Any, progress: bool = True) -> PolicyScorer:
    """The task's :class:`PolicyScorer` with the reward source its spec names (its row of
    :data:`haq_rl.task.sources.REWARD_SOURCE_TABLE` builds the evaluator; ``progress``: bars
    while a supernet trains or a predictor samples)."""
    evaluator = reward_source_entry(task.spec.reward_source).load("evaluator")(task, progress=progress)
    return PolicyScorer.from_task(task, evaluator=evaluator)
