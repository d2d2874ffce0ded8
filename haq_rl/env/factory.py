"""Build a :class:`QuantizationEnv` from a task spec or a :class:`~haq_rl.task.Task` (the registered entry point)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from haq_rl.env.quant_env import QuantizationEnv
from haq_rl.errors import ConfigError
from haq_rl.task import Task, TaskSpec, load_task
from haq_rl.task.scoring import scorer_for_task


def make_env(spec: Task | TaskSpec | str | Path, render_mode: str | None = None,
             **overrides: Any) -> QuantizationEnv:
    """Create the environment of ``spec``: a Task, a TaskSpec, a registered id or a YAML path.

    ``overrides`` replace fields of the spec (not allowed with a Task, which is already
    built). The pretrained float model is trained once and cached (see :mod:`haq_rl.pretrain`).
    """
    if isinstance(spec, Task):
        if overrides:
            raise ConfigError(f"make_env(task) takes no spec overrides (got {', '.join(sorted(overrides))}): "
                              "use task.with_settings(...)")
        task = spec
    else:
        task = load_task(spec, **overrides)
    return env_for_task(task, render_mode=render_mode)


def env_for_task(task: Task, render_mode: str | None = None, progress: bool = True) -> QuantizationEnv:
    """The Gymnasium adapter over ``task``: its scorer, layers and step settings (``progress``:
    bars while a supernet reward trains its supernet or samples its predictor)."""
    spec = task.spec
    env = QuantizationEnv(scorer_for_task(task, progress=progress), task.layers, step_mode=spec.step_mode,
                          budget_feature=spec.budget_feature, render_mode=render_mode, env_spec=spec,
                          budgets=spec.budgets)
    env.task = task
    return env
