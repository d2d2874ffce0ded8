"""The search methods as one table: name -> entry point, option class and abilities.

Adding a method is one row here and a module holding its entry point. The entry point is
a ``"module:function"`` string, imported only when a search runs the method (as
Gymnasium's registry and torchao's config table do), so this table, SearchConfig and the
CLI load no SB3, scipy or optuna. :class:`SearchConfig` checks ``options`` and ``agent``
through :func:`method_entry` when it is built, before any file is written.
"""

from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from haq_rl.errors import ConfigError, UnknownNameError, unknown_name_message

ACTIVATION_MODES = ("tied", "separate")
#: Where the integer program's per-layer prices come from: HAWQ's Hessian traces, or the
#: task's supernet (an additive fit on its evaluations, LIMPQ-style; haq_rl.supernet.importance).
SENSITIVITY_SOURCES = ("hessian", "supernet")


def _integer(minimum: int) -> dict[str, Any]:
    """Field metadata: an integer >= ``minimum``."""
    return {"check": lambda v: not isinstance(v, bool) and isinstance(v, int) and v >= minimum,
            "expected": f"an integer >= {minimum}"}


def _one_of(choices: tuple[str, ...]) -> dict[str, Any]:
    return {"check": lambda v: v in choices, "expected": "one of " + ", ".join(choices)}


_UNIT_NUMBER = {"check": lambda v: not isinstance(v, bool) and isinstance(v, int | float) and 0 <= v <= 1,
                "expected": "a number in [0, 1]"}


@dataclass(frozen=True)
class SensitivityOptions:
    """hawq's settings: the Hutchinson estimate (probes, images), tied or separate
    activation bits, and where the layer prices come from (see :mod:`haq_rl.search.hawq`)."""

    probes: int = field(default=32, metadata=_integer(1))
    images: int = field(default=256, metadata=_integer(1))
    activations: str = field(default="separate", metadata=_one_of(ACTIVATION_MODES))
    sensitivity: str = field(default="hessian", metadata=_one_of(SENSITIVITY_SOURCES))


@dataclass(frozen=True)
class GuidedOptions(SensitivityOptions):
    """guided's settings: hawq's, plus the warm-up noise around the integer-program anchor
    (HAQ's [0, 1] action units) and the actor's self-imitation steps per new best."""

    #: ``auto``: the supernet's prices when the reward comes from the supernet (or its
    #: predictor), else the Hessian's. On the supernet reward the supernet-priced anchor
    #: gave the better policies (docs/supernet.md: 97.14 vs 96.70 % retraining-free at 0.3).
    sensitivity: str = field(default="auto", metadata=_one_of(("auto", *SENSITIVITY_SOURCES)))
    anchor_sigma: float = field(default=0.04, metadata=_UNIT_NUMBER)
    imitation_steps: int = field(default=50, metadata=_integer(0))


@dataclass(frozen=True)
class TpeOptions:
    """tpe's settings: the random trials before TPE models the results."""

    startup_trials: int = field(default=10, metadata=_integer(1))


@dataclass(frozen=True)
class Nsga2Options:
    """nsga2's settings: the generation size."""

    population: int = field(default=16, metadata=_integer(2))


_POSITIVE_NUMBER = {"check": lambda v: not isinstance(v, bool) and isinstance(v, int | float) and 0 < v < float("inf"),
                    "expected": "a finite number > 0 (YAML: 0.0003 or 3.0e-4; 3e-4 reads as text)"}


@dataclass(frozen=True)
class SdqOptions:
    """sdq's settings (see :mod:`haq_rl.search.sdq`; defaults measured in docs/search_methods.md):
    the relaxation, its training steps and batch, the budget's Lagrange multiplier (start and dual-ascent rate), the
    temperature schedule (geometric from ``temperature`` to ``final_temperature``) and the
    Adam rates of the weights and of the bit parameters."""

    relaxation: str = field(default="sdq", metadata=_one_of(("sdq", "edmips")))
    steps: int = field(default=150, metadata=_integer(1))
    batch_size: int = field(default=32, metadata=_integer(2))
    penalty: float = field(default=1.0, metadata=_POSITIVE_NUMBER)
    multiplier_lr: float = field(default=0.5, metadata=_POSITIVE_NUMBER)
    temperature: float = field(default=1.0, metadata=_POSITIVE_NUMBER)
    final_temperature: float = field(default=0.2, metadata=_POSITIVE_NUMBER)
    lr: float = field(default=3e-4, metadata=_POSITIVE_NUMBER)
    bit_lr: float = field(default=0.05, metadata=_POSITIVE_NUMBER)


@dataclass(frozen=True)
class Method:
    """One row of the table.

    Attributes:
        name: the ``--method`` name.
        entry_point: ``"module:function"``: for an RL method its driver, taking (setup, config,
            recorder); for any other the factory of its proposer, taking (setup, config)
            (the harness runs it in the one loop, :mod:`haq_rl.search.loop`).
        options: the dataclass of its ``--option`` settings (None: it takes none).
        agent: an RL method (takes ``--agent`` settings; ``algo`` is its SB3 algorithm).
        batches: evaluates ``workers`` policies at a time.
        conditions: takes ``--budgets`` (one search of several budgets).
        algo: the agent's algorithm (RL methods).
    """

    name: str
    entry_point: str
    options: type | None = None
    agent: bool = False
    batches: bool = True
    conditions: bool = True
    algo: str | None = None

    def load(self) -> Callable[..., Any]:
        """The entry point's function (its module imported now)."""
        module, _, function = self.entry_point.partition(":")
        return getattr(importlib.import_module(module), function)

    def parse_options(self, given: dict[str, Any]) -> dict[str, Any]:
        """The method's settings: its defaults with ``given`` on top, each value checked.

        Raises ConfigError (one line) for an unknown key or a bad value.
        """
        fields = dataclasses.fields(self.options) if self.options is not None else ()
        names = [f.name for f in fields]
        for key, value in given.items():
            if key not in names:
                raise ConfigError(unknown_name_message(f"option of method {self.name}", key, names)
                                  if names else f"method {self.name} takes no options (got {key!r})")
            rule = next(f.metadata for f in fields if f.name == key)
            if not rule["check"](value):
                raise ConfigError(f"{self.name} option {key}={value!r} must be {rule['expected']}")
        return dataclasses.asdict(self.options(**given)) if self.options is not None else {}


_RL = "haq_rl.search.rl:search_rl"

#: Every method, in the order the CLI lists them.
METHOD_TABLE: dict[str, Method] = {m.name: m for m in (
    # DDPG anchored on the hawq integer program, self-imitating its elite (haq_rl.search.rl).
    Method("guided", _RL, GuidedOptions, algo="ddpg", agent=True),
    Method("ddpg", _RL, algo="ddpg", agent=True),  # HAQ's agent
    Method("td3", _RL, algo="td3", agent=True),
    Method("sac", _RL, algo="sac", agent=True),
    Method("random", "haq_rl.search.baselines:random_proposer"),
    Method("uniform", "haq_rl.search.baselines:uniform_proposer"),
    Method("greedy", "haq_rl.search.baselines:greedy_proposer"),
    # HAWQ-V3-style sensitivity + integer program (haq_rl.search.hawq).
    Method("hawq", "haq_rl.search.hawq:hawq_proposer", SensitivityOptions),
    # Optuna's multivariate TPE, and its NSGA-II over (reward, cost) (haq_rl.search.samplers).
    Method("tpe", "haq_rl.search.samplers:optuna_proposer", TpeOptions),
    Method("nsga2", "haq_rl.search.samplers:optuna_proposer", Nsga2Options),
    # Differentiable bit widths (SDQ; EdMIPS as an option) trained on search-train (haq_rl.search.sdq).
    Method("sdq", "haq_rl.search.sdq:sdq_proposer", SdqOptions, batches=False, conditions=False),
)}

METHODS = tuple(METHOD_TABLE)
RL_METHODS = tuple(m.name for m in METHOD_TABLE.values() if m.agent)
BASELINE_METHODS = tuple(m.name for m in METHOD_TABLE.values() if not m.agent)
#: Methods that search several budgets in one run (``budgets=``, ``--budgets``).
CONDITIONED_METHODS = tuple(m.name for m in METHOD_TABLE.values() if m.conditions)
#: Settings each method accepts in ``SearchConfig.options`` (``--option KEY=VALUE``), with defaults.
METHOD_OPTIONS: dict[str, dict[str, Any]] = {name: m.parse_options({}) for name, m in METHOD_TABLE.items()
                                             if m.options is not None}


def method_entry(name: str) -> Method:
    """The table's row of ``name`` (UnknownNameError, with a suggestion, if there is none)."""
    try:
        return METHOD_TABLE[name]
    except KeyError:
        raise UnknownNameError("search method", name, METHODS) from None
