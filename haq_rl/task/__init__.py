"""The quantization task, free of gymnasium and stable-baselines3.

- :mod:`~haq_rl.task.spec`: :class:`TaskSpec` (YAML, validation), :func:`resolve_spec`;
- :mod:`~haq_rl.task.task`: :class:`Task` (model, splits, layers, cost table, quantizer
  settings) and :func:`load_task`;
- :mod:`~haq_rl.task.budget`: every budget rule (pinned layers, the 8/8 reference, the
  tolerance, uniform policies, the largest uniform within budget, the room check, the
  action wall, policy metrics);
- :mod:`~haq_rl.task.evaluator`: :class:`PolicyEvaluator` (reward-split accuracy and KL);
- :mod:`~haq_rl.task.scoring`: :class:`PolicyScorer`, the one scoring function.

Torch-heavy pieces (Task, the evaluator, the scorer) load on first use.
"""

from __future__ import annotations

from typing import Any

from haq_rl.task.spec import DEFAULT_ENV_ID, OBJECTIVES, TaskSpec, resolve_spec, shipped_specs

__all__ = [
    "DEFAULT_ENV_ID",
    "OBJECTIVES",
    "PolicyEvaluator",
    "PolicyScorer",
    "Task",
    "TaskSpec",
    "load_task",
    "resolve_spec",
    "shipped_specs",
]

_LAZY = {
    "Task": "haq_rl.task.task",
    "load_task": "haq_rl.task.task",
    "PolicyEvaluator": "haq_rl.task.evaluator",
    "PolicyScorer": "haq_rl.task.scoring",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'haq_rl.task' has no attribute {name!r}")
