"""Declarative task specs: one YAML file in ``envs/`` = one task = one registered env id.

A spec names everything a :class:`~haq_rl.task.Task` needs: the model and its dataset,
the hardware profile, the objective and its budget, the bit range and the evaluation
settings. ``gymnasium.make(id, **overrides)`` and ``haq-rl search --set KEY=VALUE``
replace fields of the spec by name (``budget=0.3``, ``hardware="bismo-cloud"``, ...).
:func:`resolve_spec` is the one way to get a spec from a name, a path or a spec.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from haq_rl.errors import ConfigError, MissingPathError, UnknownNameError, did_you_mean
from haq_rl.hardware.cost_table import OBJECTIVES
from haq_rl.quant.config import ACT_CALIBRATIONS, WEIGHT_METHODS
from haq_rl.resources import resource_dir

WEIGHT_ONLY_OBJECTIVES = ("size",)
STEP_MODES = ("alternate", "joint")
CALIBRATIONS = ACT_CALIBRATIONS
REWARD_METRICS = ("accuracy", "kl")
#: Registered ids are ``haq_rl/<Name>-v<N>``; a bare ``<Name>-v<N>`` resolves too.
NAMESPACE = "haq_rl"
#: The task the CLI, ``make run`` and the notebooks use when none is named.
DEFAULT_ENV_ID = "haq_rl/MobileNetV2Edge-v1"


@dataclass(frozen=True)
class TaskSpec:
    """Everything that defines one quantization task. Validates itself on creation."""

    id: str
    model: str = "mobilenetv2"
    weights: str | None = None
    dataset: str = "mnist5k"
    data_root: str | None = None
    input_size: int = 28
    width_mult: float = 1.0
    hardware: str = "bismo-edge"
    objective: str = "latency"
    budget: float = 0.5
    min_bits: int = 2
    max_bits: int = 8
    pin_first_last: bool = True
    step_mode: str = "alternate"
    budget_feature: bool = False
    weight_method: str = "linear"
    calibration: str = "mse"
    calibration_batches: int = 4
    reward_batch_size: int = 250
    finetune_steps: int = 0
    finetune_lr: float = 1e-3
    reward_metric: str = "accuracy"
    bn_recalibration: int = 0
    split_seed: int = 0
    device: str = "cpu"
    description: str = ""
    source: str | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        _check_choice("objective", self.objective, OBJECTIVES)
        _check_choice("step_mode", self.step_mode, STEP_MODES)
        _check_choice("calibration", self.calibration, CALIBRATIONS)
        _check_choice("weight_method", self.weight_method, WEIGHT_METHODS)
        _check_choice("reward_metric", self.reward_metric, REWARD_METRICS)
        if not 0.0 < float(self.budget) <= 1.0:
            raise ConfigError(f"budget={self.budget!r} must be in (0, 1] (a ratio of the uniform 8/8 cost)")
        if not (isinstance(self.min_bits, int) and isinstance(self.max_bits, int)
                and 1 <= self.min_bits <= self.max_bits <= 8):
            raise ConfigError(
                f"bit range min_bits={self.min_bits!r}, max_bits={self.max_bits!r} is invalid; "
                "allowed: integers with 1 <= min_bits <= max_bits <= 8")
        for name in ("input_size", "calibration_batches", "reward_batch_size"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ConfigError(f"{name}={value!r} must be a positive integer")
        if isinstance(self.bn_recalibration, bool) or not isinstance(self.bn_recalibration, int) \
                or self.bn_recalibration < 0:
            raise ConfigError(f"bn_recalibration={self.bn_recalibration!r} must be an integer >= 0 "
                              "(search-train batches; 0 = off)")
        if not isinstance(self.finetune_steps, int) or self.finetune_steps < 0:
            raise ConfigError(f"finetune_steps={self.finetune_steps!r} must be an integer >= 0")
        if self.width_mult <= 0:
            raise ConfigError(f"width_mult={self.width_mult!r} must be > 0")

    @property
    def weight_only(self) -> bool:
        """Objectives that only depend on weights (model size) step over weights only."""
        return self.objective in WEIGHT_ONLY_OBJECTIVES

    def replace(self, **overrides: Any) -> TaskSpec:
        """A copy with ``overrides`` applied; unknown names get a "did you mean"."""
        names = [f.name for f in dataclasses.fields(self)]
        for key in overrides:
            if key not in names:
                raise UnknownNameError("env setting", key, names)
        return dataclasses.replace(self, **overrides)

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data.pop("source")
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str | None = None) -> TaskSpec:
        names = [f.name for f in dataclasses.fields(cls) if f.name != "source"]
        where = f" in {source}" if source else ""
        for key in data:
            if key not in names:
                hint = did_you_mean(key, names)
                suffix = f": did you mean {hint!r}?" if hint else ""
                raise ConfigError(f"unknown env spec key {key!r}{where}{suffix}")
        if "id" not in data:
            raise ConfigError(f"env spec{where} has no 'id'")
        try:
            return cls(**data, source=source)
        except TypeError as error:  # wrong value types that dataclass cannot catch
            raise ConfigError(f"invalid env spec{where}: {error}") from None

    @classmethod
    def from_yaml(cls, path: str | Path) -> TaskSpec:
        path = Path(path)
        if not path.is_file():
            raise MissingPathError(f"env spec file not found: {path}")
        try:
            data = yaml.safe_load(path.read_text())
        except yaml.YAMLError as error:
            raise ConfigError(f"{path} is not valid YAML: {str(error).splitlines()[0]}") from None
        if not isinstance(data, dict):
            raise ConfigError(f"{path} must hold a mapping of env settings, got {type(data).__name__}")
        return cls.from_dict(data, source=str(path))


def _check_choice(name: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise UnknownNameError(name, str(value), choices)


def shipped_specs() -> dict[str, TaskSpec]:
    """id -> TaskSpec for every YAML file in the shipped ``envs/`` folder."""
    specs = [TaskSpec.from_yaml(path) for path in sorted(resource_dir("envs").glob("*.yaml"))]
    return {spec.id: spec for spec in specs}


def resolve_spec(spec: TaskSpec | str | Path, **overrides: Any) -> TaskSpec:
    """A TaskSpec from itself, a registered id or a path to a YAML spec, with ``overrides``."""
    if isinstance(spec, TaskSpec):
        resolved = spec
    else:
        text = str(spec)
        known = shipped_specs()
        if text.endswith((".yaml", ".yml")) or Path(text).is_file():
            resolved = TaskSpec.from_yaml(text)
        elif text in known:
            resolved = known[text]
        elif f"{NAMESPACE}/{text}" in known:
            resolved = known[f"{NAMESPACE}/{text}"]
        else:
            raise UnknownNameError("environment", text, known)
    return resolved.replace(**overrides) if overrides else resolved
