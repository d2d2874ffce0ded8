"""The supernet family's entry points in the reward-source table (:mod:`haq_rl.task.sources`):
``(task, progress) -> evaluator`` for ``supernet``, ``predictor`` and ``tabulated``."""

from __future__ import annotations

from typing import Any

from haq_rl.supernet.predictor import PredictedEvaluator, predictor_evaluator
from haq_rl.supernet.reward import supernet_config, supernet_evaluator
from haq_rl.supernet.tabulated import TabulatedEvaluator, shipped_evaluator
from haq_rl.supernet.train import train_supernet
from haq_rl.task.evaluator import PolicyEvaluator


def supernet_reward_evaluator(task: Any, progress: bool = True) -> PolicyEvaluator:
    """``reward_source: supernet``'s evaluator: the task's supernet (trained first when the
    cache has none) at each policy."""
    return supernet_evaluator(task, train_supernet(task, supernet_config(task), progress=progress))


def predictor_reward_evaluator(task: Any, progress: bool = True) -> PredictedEvaluator:
    """``reward_source: predictor``'s evaluator: fitted on the task's supernet (trained first
    when the cache has none), or on its shipped samples when the task is a benchmark's."""
    shipped = shipped_evaluator(task, tabulated=False)
    if shipped is not None:  # no supernet to train or load
        return shipped
    trained = train_supernet(task, supernet_config(task), progress=progress)
    return predictor_evaluator(task, supernet_evaluator(task, trained), trained, progress=progress)


def tabulated_reward_evaluator(task: Any, progress: bool = True) -> TabulatedEvaluator:
    """``reward_source: tabulated``'s evaluator: the shipped table of the task's supernet
    scores (exact where a policy is tabulated, its predictor elsewhere)."""
    evaluator = shipped_evaluator(task, tabulated=True)  # ConfigError when none ships for it
    assert isinstance(evaluator, TabulatedEvaluator)
    return evaluator
