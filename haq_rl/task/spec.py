"""Declarative task specs: one YAML file in ``envs/`` = one task = one registered env id.

A spec names everything a :class:`~haq_rl.task.Task` needs: the model and its dataset,
the hardware profile, the objective and its budget, the bit range and the evaluation
settings. ``gymnasium.make(id, **overrides)`` and ``haq-rl search --set KEY=VALUE``
replace fields of the spec by name (``budget=0.3``, ``hardware="bismo-cloud"``, ...).
:func:`resolve_spec` is the one way to get a spec from a name, a path or a spec.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path, PurePath
from typing import Any

import yaml

from haq_rl.data.normalization import DATASET_STATS, explicit_stats
from haq_rl.errors import ConfigError, MissingPathError, UnknownNameError, check_seed, did_you_mean
from haq_rl.fileio import yaml_error_line
from haq_rl.hardware.cost_table import OBJECTIVES
from haq_rl.quant.config import ACT_CALIBRATIONS, WEIGHT_METHODS
from haq_rl.resources import resource_dir

WEIGHT_ONLY_OBJECTIVES = ("size",)
STEP_MODES = ("alternate", "joint")
CALIBRATIONS = ACT_CALIBRATIONS
REWARD_METRICS = ("accuracy", "kl")
#: Where a policy's reward comes from: ``post_training`` (the float weights quantized as
#: they are), ``supernet`` (the task's bit-width supernet, trained once, with BatchNorm
#: re-estimated per policy) or ``predictor`` (a regressor fitted on supernet evaluations:
#: milliseconds per episode) or ``tabulated`` (the shipped table of supernet scores, its
#: predictor off the table; docs/leaderboard.md). See docs/supernet.md.
REWARD_SOURCES = ("post_training", "supernet", "predictor", "tabulated")
#: Registered ids are ``haq_rl/<Name>-v<N>``; a bare ``<Name>-v<N>`` resolves too.
NAMESPACE = "haq_rl"
#: The task the CLI, ``make run`` and the notebooks use when none is named.
DEFAULT_ENV_ID = "haq_rl/FashionMobileNetV2Edge-v0"


#: The kind each scalar field of TaskSpec must hold, by its annotation (tuples have checks
#: of their own): ``--set``, a YAML spec and config.json all land here.
_FIELD_KINDS: dict[str, tuple[type, ...]] = {
    "str": (str,), "str | None": (str, PurePath, type(None)), "int": (int,), "float": (int, float), "bool": (bool,),
}
_KIND_WORDS = {"str": "a string", "str | None": "a string or null", "int": "an integer",
               "float": "a finite number", "bool": "true or false"}


def _check_field_types(spec: TaskSpec) -> None:
    """ConfigError (one line) for a field of the wrong kind: ``width_mult=abc``,
    ``model=123``, ``pin_first_last=maybe``, ``budget_feature=2``; before any check that
    would compare or hash it."""
    for item in dataclasses.fields(spec):
        kinds = _FIELD_KINDS.get(str(item.type))
        if kinds is None:
            continue
        value = getattr(spec, item.name)
        ok = isinstance(value, kinds) and not (isinstance(value, bool) and bool not in kinds)
        if ok and item.type == "float":
            ok = math.isfinite(value)
        if not ok:
            raise ConfigError(f"{item.name}={value!r} must be {_KIND_WORDS[str(item.type)]}")


@dataclass(frozen=True)
class TaskSpec:
    """Everything that defines one quantization task. Validates itself on creation."""

    id: str
    model: str = "mobilenetv2"
    weights: str | None = None
    dataset: str = "mnist5k"
    data_root: str | None = None
    input_size: int = 28
    #: What the model's pixels are: ``dataset`` (search_train's mean/std), ``none`` (pixels /
    #: 255) or ``MEAN/STD`` (haq_rl.data.normalization, docs/preprocessing.md).
    normalize: str = DATASET_STATS
    width_mult: float = 1.0
    hardware: str = "bismo-edge"
    objective: str = "latency"
    budget: float = 0.5
    budgets: tuple[float, ...] = ()
    extra_budgets: tuple[tuple[str, float], ...] = ()
    min_bits: int = 2
    max_bits: int = 8
    pin_first_last: bool = True
    step_mode: str = "alternate"
    budget_feature: bool = False
    weight_method: str = "linear"
    calibration: str = "mse"
    calibration_batches: int = 4
    reward_batch_size: int = 250
    reward_images: int = 0
    finetune_epoch_images: int = 0
    finetune_steps: int = 0
    finetune_lr: float = 1e-3
    reward_metric: str = "accuracy"
    bn_recalibration: int = 0
    reward_source: str = "post_training"
    supernet_epochs: int = 3
    split_seed: int = 0
    device: str = "cpu"
    description: str = ""
    source: str | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        _check_field_types(self)
        check_seed("split_seed", self.split_seed)
        explicit_stats(self.normalize)  # its form; the channel count is checked with the images
        _check_choice("objective", self.objective, OBJECTIVES)
        _check_choice("step_mode", self.step_mode, STEP_MODES)
        _check_choice("calibration", self.calibration, CALIBRATIONS)
        _check_choice("weight_method", self.weight_method, WEIGHT_METHODS)
        _check_choice("reward_metric", self.reward_metric, REWARD_METRICS)
        _check_choice("reward_source", self.reward_source, REWARD_SOURCES)
        object.__setattr__(self, "budgets", checked_budgets(self.budgets))
        object.__setattr__(self, "extra_budgets", checked_extra_budgets(self.extra_budgets, self.objective))
        if self.budgets:
            if self.extra_budgets:
                raise ConfigError("budgets (a budget-conditioned search) and extra_budgets (several "
                                  "constraints) cannot be combined; give one or the other")
            # A conditioned task's own budget is its loosest: its scorer admits every listed one.
            object.__setattr__(self, "budget", self.budgets[-1])
        if not _is_ratio(self.budget):
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
        if isinstance(self.reward_images, bool) or not isinstance(self.reward_images, int) or self.reward_images < 0:
            raise ConfigError(f"reward_images={self.reward_images!r} must be an integer >= 0 "
                              "(images of the reward split each reward evaluates; 0 = all)")
        if isinstance(self.finetune_epoch_images, bool) or not isinstance(self.finetune_epoch_images, int) \
                or self.finetune_epoch_images < 0:
            raise ConfigError(f"finetune_epoch_images={self.finetune_epoch_images!r} must be an integer >= 0 "
                              "(training images per fine-tune epoch; 0 = all)")
        if isinstance(self.bn_recalibration, bool) or not isinstance(self.bn_recalibration, int) \
                or self.bn_recalibration < 0:
            raise ConfigError(f"bn_recalibration={self.bn_recalibration!r} must be an integer >= 0 "
                              "(search-train batches; 0 = off)")
        if not isinstance(self.finetune_steps, int) or self.finetune_steps < 0:
            raise ConfigError(f"finetune_steps={self.finetune_steps!r} must be an integer >= 0")
        if isinstance(self.supernet_epochs, bool) or not isinstance(self.supernet_epochs, int) \
                or self.supernet_epochs < 1:
            raise ConfigError(f"supernet_epochs={self.supernet_epochs!r} must be an integer >= 1")
        if self.reward_source != "post_training" and self.finetune_steps:
            raise ConfigError(f"finetune_steps={self.finetune_steps} needs reward_source=post_training: the "
                              f"{self.reward_source} reward scores trained weights already")
        if self.width_mult <= 0:
            raise ConfigError(f"width_mult={self.width_mult!r} must be > 0")

    @property
    def weight_only(self) -> bool:
        """Objectives that only depend on weights (model size) step over weights only
        (with extra budgets, only when every constrained objective is weight-only)."""
        return is_weight_only(self.objectives)

    @property
    def objectives(self) -> tuple[str, ...]:
        """Every constrained objective: ``objective`` first, then the ``extra_budgets`` ones."""
        return (self.objective, *(name for name, _ in self.extra_budgets))

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
            raise ConfigError(f"{path} is not valid YAML: {yaml_error_line(error)}") from None
        if not isinstance(data, dict):
            raise ConfigError(f"{path} must hold a mapping of env settings, got {type(data).__name__}")
        return cls.from_dict(data, source=str(path))


def is_weight_only(objectives: tuple[str, ...] | list[str]) -> bool:
    """Whether only weight bits are searched: every constrained objective depends on weights
    alone (model size); activations then stay at 8 bits."""
    return all(objective in WEIGHT_ONLY_OBJECTIVES for objective in objectives)


def _is_ratio(value: Any) -> bool:
    return not isinstance(value, bool) and isinstance(value, int | float) and 0.0 < float(value) <= 1.0


def checked_budgets(budgets: Any) -> tuple[float, ...]:
    """The budgets of a budget-conditioned search as a tuple, or ConfigError naming the bad entry.

    Every entry is a ratio in (0, 1]; the list is sorted ascending without duplicates (a
    duplicate or out-of-order entry is most likely a typo).
    """
    if budgets is None:
        return ()
    if isinstance(budgets, str | bytes) or not isinstance(budgets, list | tuple):
        raise ConfigError(f"budgets={budgets!r} must be a list of ratios in (0, 1]")
    checked: list[float] = []
    for entry in budgets:
        if not _is_ratio(entry):
            raise ConfigError(f"budgets entry {entry!r} must be a number in (0, 1] (a ratio of the uniform 8/8 cost)")
        value = float(entry)
        if value in checked:
            raise ConfigError(f"budgets entry {value:g} appears twice; list each budget once")
        if checked and value < checked[-1]:
            raise ConfigError(f"budgets entry {value:g} comes after {checked[-1]:g}; list budgets in ascending order")
        checked.append(value)
    if len(checked) == 1:
        raise ConfigError(f"budgets lists one entry ({checked[0]:g}); give two or more, or use budget= for one")
    return tuple(checked)


def checked_extra_budgets(extra: Any, objective: str) -> tuple[tuple[str, float], ...]:
    """Further (objective, budget) constraints as sorted pairs, from a mapping or pairs.

    Each objective is one of :data:`OBJECTIVES`, other than the main ``objective``, with a
    ratio in (0, 1].
    """
    if extra is None:
        return ()
    if isinstance(extra, dict):
        pairs = list(extra.items())
    elif isinstance(extra, list | tuple) and all(isinstance(p, list | tuple) and len(p) == 2 for p in extra):
        pairs = [tuple(p) for p in extra]
    else:
        raise ConfigError(f"extra_budgets={extra!r} must map objectives to budgets, e.g. {{energy: 0.6}}")
    checked: dict[str, float] = {}
    for name, value in pairs:
        _check_choice("extra_budgets objective", str(name), OBJECTIVES)
        if name == objective or name in checked:
            raise ConfigError(f"extra_budgets objective {name!r} is constrained twice; give each objective once")
        if not _is_ratio(value):
            raise ConfigError(f"extra_budgets {name}={value!r} must be a number in (0, 1] (a ratio of 8/8)")
        checked[str(name)] = float(value)
    return tuple(sorted(checked.items()))


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
