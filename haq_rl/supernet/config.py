"""Settings of one supernet training (a frozen dataclass that validates itself)."""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from typing import Any

from haq_rl.errors import ConfigError, UnknownNameError, check_integer, check_number


@dataclass(frozen=True)
class SupernetConfig:
    """How a bit-width supernet is trained.

    Every step trains, on one batch of ``search_train``, the largest configuration, the
    smallest one (the sandwich rule of slimmable networks, Yu & Huang, ICCV 2019) and
    ``random_paths`` configurations drawn uniformly per layer; their gradients are summed
    before one optimizer step. Each path learns from the float model's logits (in-place
    distillation, BigNAS / once-for-all) mixed with the labels:
    ``(1 - distill) * CE + distill * T^2 * KL``.

    Arguments:
        epochs: passes over ``search_train`` (>= 1).
        batch_size: images per step (>= 2: BatchNorm needs two samples).
        lr: Adam's peak rate (cosine to zero after a linear warm-up of ``warmup`` of the steps).
        random_paths: uniformly drawn configurations per step beside the sandwich's two (>= 0).
        distill: weight of the distillation term in [0, 1].
        temperature: distillation temperature (> 0).
        warmup: fraction of the steps over which the weights' rate ramps up, in [0, 1).
        checkpoint_every: steps between resumable checkpoints (a killed training resumes
            from the last one).
        seed: drives the batch order and the sampled configurations.
        threads: torch threads while training (0: leave torch's setting).
    """

    epochs: int = 3
    batch_size: int = 128
    lr: float = 5e-4
    random_paths: int = 2
    distill: float = 0.5
    temperature: float = 2.0
    warmup: float = 0.05
    checkpoint_every: int = 10
    seed: int = 0
    threads: int = 0

    def __post_init__(self) -> None:
        check_integer("epochs", self.epochs, 1)
        check_integer("batch_size", self.batch_size, 2)
        check_integer("random_paths", self.random_paths, 0)
        check_integer("checkpoint_every", self.checkpoint_every, 1)
        check_integer("seed", self.seed, 0)
        check_integer("threads", self.threads, 0)
        check_number("lr", self.lr, 0.0, 10.0, low_open=True)
        check_number("distill", self.distill, 0.0, 1.0)
        check_number("temperature", self.temperature, 0.0, 100.0, low_open=True)
        check_number("warmup", self.warmup, 0.0, 0.99)

    def identity(self) -> dict[str, Any]:
        """What the trained weights depend on (``threads`` and ``checkpoint_every`` do not)."""
        data = dataclasses.asdict(self)
        data.pop("threads")
        data.pop("checkpoint_every")
        return data

    def replace(self, **changes: Any) -> SupernetConfig:
        names = [f.name for f in dataclasses.fields(self)]
        for key in changes:
            if key not in names:
                raise UnknownNameError("supernet setting", key, names)
        return dataclasses.replace(self, **changes)


#: A shipped table's name: a file stem in haq_rl/resources/benchmark/, never a path.
TABLE_NAME = re.compile(r"[a-z0-9][a-z0-9._-]*")


def check_table_name(name: Any) -> None:
    """ConfigError (one line) unless ``name`` is a shipped table's name (:data:`TABLE_NAME`)."""
    if not isinstance(name, str) or not TABLE_NAME.fullmatch(name):
        raise ConfigError(f"table must be a shipped table's name (lower-case letters, digits, '.', '_', '-'), "
                          f"got {name!r}")


@dataclass(frozen=True)
class TabulatedConfig(SupernetConfig):
    """``reward_source: tabulated``'s options: the supernet's recipe (which identifies the
    task's shipped tables) and which of them answers.

    Arguments:
        table: the shipped table's name (a key of ``haq_rl/resources/benchmark/manifest.json``
            without ``.npz``). Empty: the task's default table, the first shipped for it, so
            an id that names none keeps its rewards when a larger table ships.
    """

    table: str = ""

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.table != "":
            check_table_name(self.table)

    def identity(self) -> dict[str, Any]:
        """The supernet's identity: which table answers does not change the trained weights."""
        data = super().identity()
        data.pop("table")
        return data
