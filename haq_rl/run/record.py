"""The run record: config.json, written in one place.

:class:`RunRecord` is what a search writes (its settings, the task spec, the layers, the
float model and the costs); :func:`~haq_rl.run.config.read_run_config` is its one reader,
and :mod:`haq_rl.run.resolve` says which policy, spec and task a run argument means.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from haq_rl import __version__
from haq_rl.fileio import write_json_atomic
from haq_rl.run.config import RUN_CONFIG_VERSION
from haq_rl.run.layout import CONFIG_FILE
from haq_rl.task.spec import TaskSpec


@dataclass(frozen=True)
class RunRecord:
    """What a search's config.json records, typed.

    Attributes:
        search: the search settings (``SearchConfig.to_dict()``).
        spec: the task spec the search ran (its overrides applied).
        layers: the quantized layers' names, in order; ``layer_specs`` their shapes (the
            cost table is rebuilt from them without tracing the model).
        steps_per_episode: an episode's steps (layers x weight/activation).
        float_accuracy: the float model's reward-split metric; ``float_test_accuracy`` its
            test-split top-1.
        float_model: which float model, by its SHA-256 (``shipped_models.float_model_record``).
        reference_cost: the uniform 8/8 cost; ``budget_cost`` the budget's.
    """

    search: dict[str, Any]
    spec: TaskSpec
    layers: list[str]
    layer_specs: list[dict[str, Any]]
    steps_per_episode: int
    float_accuracy: float
    float_test_accuracy: float
    float_model: dict[str, Any] | None
    reference_cost: float
    budget_cost: float

    def to_dict(self) -> dict[str, Any]:
        """config.json's content (the format :func:`~haq_rl.run.config.read_run_config` reads)."""
        return {
            "format_version": RUN_CONFIG_VERSION, "haq_rl_version": __version__, "search": self.search,
            "env": self.spec.to_dict(), "layers": self.layers, "layer_specs": self.layer_specs,
            "steps_per_episode": self.steps_per_episode, "float_accuracy": self.float_accuracy,
            "float_test_accuracy": self.float_test_accuracy, "float_model": self.float_model,
            "reference_cost": self.reference_cost, "budget_cost": self.budget_cost,
        }

    def write(self, run_dir: Path) -> Path:
        """Write ``run_dir``/config.json (atomically)."""
        return write_json_atomic(run_dir / CONFIG_FILE, self.to_dict())
