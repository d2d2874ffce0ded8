"""The search methods as one table: name -> entry point, option class and abilities.

Adding a method is one row here and a module holding its entry point. An RL method is
SB3's learn loop with settings pinned (``agent_defaults``) and, where it needs more, hooks
(``callback``: the guided agent's anchor and elite), as SB3's DDPG is TD3 with settings
pinned; the driver never asks which method it runs. Each entry point is
a ``"module:function"`` string, imported only when a search runs the method (as
Gymnasium's registry and torchao's config table do), so this table, SearchConfig and the
CLI load no SB3, scipy or optuna. :class:`SearchConfig` checks ``options`` and ``agent``
through :func:`method_entry` when it is built, before any file is written.
"""

from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from haq_rl.errors import (
    ConfigError,
    UnknownNameError,
    check_integer,
    check_number,
    unknown_name_message,
)

ACTIVATION_MODES = ("tied", "separate")
#: Where the integer program's per-layer prices come from: HAWQ's Hessian traces, or the
#: task's supernet (an additive fit on its evaluations, LIMPQ-style; haq_rl.supernet.importance).
SENSITIVITY_SOURCES = ("hessian", "supernet")


def _integer(minimum: int) -> dict[str, Any]:
    """Field metadata: an integer >= ``minimum`` (``check(name, value)`` raises ConfigError)."""
    return {"check": lambda name, value: check_integer(name, value, minimum)}


def _one_of(choices: tuple[str, ...]) -> dict[str, Any]:
    def check(name: str, value: object) -> None:
        if value not in choices:
            raise ConfigError(f"{name}={value!r} must be one of {', '.join(choices)}")
    return {"check": check}


_UNIT_NUMBER = {"check": lambda name, value: check_number(name, value, 0.0, 1.0)}


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


def _check_positive(name: str, value: object) -> None:
    try:
        check_number(name, value, 0.0, float("inf"), low_open=True)
    except ConfigError as error:  # YAML reads 3e-4 (no dot) as text: say how to write it
        raise ConfigError(f"{error} (YAML: 0.0003 or 3.0e-4; 3e-4 reads as text)") from None


_POSITIVE_NUMBER = {"check": _check_positive}


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
        options: the dataclass of its ``--option`` settings (None: it takes none); the
            method receives an instance (``SearchConfig.method_options()``).
        agent: an RL method (takes ``--agent`` settings; ``algo`` is its SB3 algorithm).
        batches: evaluates ``workers`` policies at a time.
        conditions: takes ``--budgets`` (one search of several budgets).
        algo: the agent's algorithm (RL methods).
        agent_defaults: its agent settings where they differ from HAQ's (``--agent`` goes on top).
        callback: ``"module:Class"``, the :class:`~haq_rl.search.hooks.AgentHooks` the RL
            driver calls (None: HAQ's agent, no hooks).
    """

    name: str
    entry_point: str
    options: type | None = None
    agent: bool = False
    batches: bool = True
    conditions: bool = True
    algo: str | None = None
    agent_defaults: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}), hash=False)
    callback: str | None = None

    def load(self) -> Callable[..., Any]:
        """The entry point's function (its module imported now)."""
        return _load(self.entry_point)

    def agent_hooks(self) -> type:
        """The class of the RL driver's hooks: the row's ``callback``, else the hooks that add nothing."""
        return _load(self.callback or "haq_rl.search.hooks:AgentHooks")

    def parse_options(self, given: dict[str, Any]) -> Any:
        """The method's settings, an instance of its ``options`` dataclass (None: it takes
        none): its defaults with ``given`` on top, each value checked.

        Raises ConfigError (one line) for an unknown key or a bad value.
        """
        fields = dataclasses.fields(self.options) if self.options is not None else ()
        names = [f.name for f in fields]
        for key, value in given.items():
            if key not in names:
                raise ConfigError(unknown_name_message(f"option of method {self.name}", key, names)
                                  if names else f"method {self.name} takes no options (got {key!r})")
            next(f.metadata for f in fields if f.name == key)["check"](f"{self.name} option {key}", value)
        return self.options(**given) if self.options is not None else None


def _load(entry_point: str) -> Any:
    """The attribute a ``"module:attribute"`` entry point names (its module imported now)."""
    module, _, attribute = entry_point.partition(":")
    return getattr(importlib.import_module(module), attribute)


_RL = "haq_rl.search.rl:search_rl"

#: Every method, in the order the CLI lists them.
METHOD_TABLE: dict[str, Method] = {m.name: m for m in (
    # DDPG anchored on the hawq integer program, self-imitating its elite (haq_rl.search.guided),
    # with a shorter warm-up around the anchor and noise of about a third of a bit bin.
    Method("guided", _RL, GuidedOptions, algo="ddpg", agent=True, callback="haq_rl.search.guided:GuidedHooks",
           agent_defaults=MappingProxyType({"warmup_episodes": 10, "noise_sigma": 0.04, "noise_decay": 1.0})),
    Method("ddpg", _RL, algo="ddpg", agent=True),  # HAQ's agent
    Method("td3", _RL, algo="td3", agent=True),
    Method("sac", _RL, algo="sac", agent=True),
    Method("random", "haq_rl.search.baselines:random_proposer"),
    Method("uniform", "haq_rl.search.baselines:uniform_proposer"),
    Method("greedy", "haq_rl.search.baselines:greedy_proposer"),
    # HAWQ-V3-style sensitivity + integer program (haq_rl.search.hawq).
    Method("hawq", "haq_rl.search.hawq:hawq_proposer", SensitivityOptions),
    # Optuna's multivariate TPE, and its NSGA-II over (reward, cost) (haq_rl.search.samplers).
    Method("tpe", "haq_rl.search.samplers:tpe_proposer", TpeOptions),
    Method("nsga2", "haq_rl.search.samplers:nsga2_proposer", Nsga2Options),
    # Differentiable bit widths (SDQ; EdMIPS as an option) trained on search-train (haq_rl.search.sdq).
    Method("sdq", "haq_rl.search.sdq:sdq_proposer", SdqOptions, batches=False, conditions=False),
)}

METHODS = tuple(METHOD_TABLE)
RL_METHODS = tuple(m.name for m in METHOD_TABLE.values() if m.agent)
BASELINE_METHODS = tuple(m.name for m in METHOD_TABLE.values() if not m.agent)
#: Methods that search several budgets in one run (``budgets=``, ``--budgets``).
CONDITIONED_METHODS = tuple(m.name for m in METHOD_TABLE.values() if m.conditions)
#: Settings each method accepts in ``SearchConfig.options`` (``--option KEY=VALUE``), with defaults.
METHOD_OPTIONS: dict[str, dict[str, Any]] = {name: dataclasses.asdict(m.parse_options({}))
                                             for name, m in METHOD_TABLE.items() if m.options is not None}


def method_entry(name: str) -> Method:
    """The table's row of ``name`` (UnknownNameError, with a suggestion, if there is none)."""
    try:
        return METHOD_TABLE[name]
    except KeyError:
        raise UnknownNameError("search method", name, METHODS) from None
