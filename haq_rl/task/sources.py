"""The reward sources and the model starts as tables: a task's ``reward_source`` names a row.

A reward source says where a policy's reward comes from: the evaluator that scores it,
whether that evaluator scores trained weights (then guided's ``sensitivity=auto`` prices
layers on them and the fine-tune's ``start=auto`` starts from them), whether worker pools
can copy it, its layer prices for the integer program, the model start that reproduces
what it scored, and the dataclass of its ``reward_options``. A model start is the model a
fine-tune, ``evaluate`` and ``export`` put at a policy (:mod:`haq_rl.finetune.policy_model`).

Every entry point is a ``"module:attribute"`` string imported only when used (as
:mod:`haq_rl.search.methods` and Gymnasium's registry do), so this table, TaskSpec and
the task layer never import the supernet package: only these rows name it. Adding a
reward source is one row here and a module holding its entry points (docs/development.md).
"""

from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from haq_rl.errors import ConfigError, UnknownNameError, unknown_name_message


@dataclass(frozen=True)
class RewardSource:
    """One row of the reward-source table.

    Attributes:
        name: the spec's ``reward_source`` value.
        evaluator: ``"module:function"``, ``(task, progress) -> ScoresSource``: what scores
            the task's policies (:class:`~haq_rl.task.scoring.PolicyScorer` reads it).
        trained_weights: its reward scores weights trained for quantization, not the float
            weights as they are: ``start=auto`` starts from them and ``sensitivity=auto``
            prices layers on them.
        pooled: worker pools copy its evaluator (``--workers``); False evaluates in place
            (a prediction costs less than shipping the policy).
        start: the :data:`MODEL_STARTS` row that reproduces what it scored at a policy.
        prices: ``"module:function"``, ``(task, progress) -> LayerSensitivity``: per-layer
            prices fitted on its trained weights (None: it has none; the Hessian's serve).
        options: ``"module:Class"``: the frozen dataclass of its ``reward_options`` (it
            validates itself); None: it takes none.
    """

    name: str
    evaluator: str
    trained_weights: bool
    pooled: bool
    start: str
    prices: str | None = None
    options: str | None = None

    def load(self, attribute: str) -> Any:
        """What the entry point in field ``attribute`` names (its module imported now)."""
        return _load(getattr(self, attribute))

    def parse_options(self, given: Any) -> tuple[tuple[str, Any], ...]:
        """``given`` (a mapping or (key, value) pairs) checked by the options dataclass, as
        sorted pairs; ConfigError (one line) for a key it lacks or a value it refuses."""
        pairs = _pairs(given, self.name)
        if not pairs:
            return ()
        if self.options is None:
            raise ConfigError(f"reward_source {self.name} takes no reward_options (got {', '.join(pairs)})")
        names = [f.name for f in dataclasses.fields(self.load("options"))]
        for key in pairs:
            if key not in names:
                raise ConfigError(unknown_name_message(f"reward_options key of reward_source {self.name}", key, names))
        self.options_of(pairs)  # its __post_init__ checks the values
        return tuple(sorted(pairs.items()))

    def options_of(self, options: Iterable[tuple[str, Any]] | dict[str, Any]) -> Any:
        """The options dataclass holding ``options`` over its defaults (None if it takes none)."""
        if self.options is None:
            return None
        try:
            return self.load("options")(**dict(options))
        except TypeError as error:  # a value of a kind its checks cannot compare
            raise ConfigError(f"reward_options of reward_source {self.name}: {error}") from None


@dataclass(frozen=True)
class StartSettings:
    """How a start quantizes its model (the fine-tune's recipe fields it reads).

    ``quantizer``: a QAT quantizer (``lsq``, ``max_abs``, ``pact``); ``zero_point``: LSQ+
    zero points on signed inputs; ``fold_bn``: BatchNorm folded into the weights first.
    """

    quantizer: str = "lsq"
    zero_point: bool = True
    fold_bn: bool = False


@dataclass(frozen=True)
class ModelStart:
    """One row of the start table: a model prepared for QAT at a policy.

    Attributes:
        name: the fine-tune's ``start`` value.
        entry_point: ``"module:function"``, ``(task, policy, settings, device, progress) ->
            nn.Module``, the model fake-quantized per the policy, on ``device``.
        quantizers: the quantizers it can start (None: every one).
        folds: it can fold BatchNorm first (``fold_bn``).
        why: why it refuses the others (ends the one-line error).
    """

    name: str
    entry_point: str
    quantizers: tuple[str, ...] | None = None
    folds: bool = True
    why: str = ""

    def load(self) -> Callable[..., Any]:
        return _load(self.entry_point)


_SUPERNET_PRICES = "haq_rl.supernet.importance:supernet_sensitivity"
_SUPERNET_OPTIONS = "haq_rl.supernet.config:SupernetConfig"

#: Every reward source, in the order errors list them.
REWARD_SOURCE_TABLE: dict[str, RewardSource] = {s.name: s for s in (
    # The float weights quantized as they are, per policy (HAQ's reward).
    RewardSource("post_training", "haq_rl.task.scoring:post_training_evaluator", trained_weights=False, pooled=True,
                 start="float"),
    # The task's bit-width supernet, trained once, BatchNorm re-estimated per policy (docs/supernet.md).
    RewardSource("supernet", "haq_rl.supernet.evaluators:supernet_reward_evaluator", trained_weights=True, pooled=True,
                 start="supernet", prices=_SUPERNET_PRICES, options=_SUPERNET_OPTIONS),
    # A regressor fitted on supernet evaluations: microseconds per policy, so no pool.
    RewardSource("predictor", "haq_rl.supernet.evaluators:predictor_reward_evaluator", trained_weights=True,
                 pooled=False, start="supernet", prices=_SUPERNET_PRICES, options=_SUPERNET_OPTIONS),
    # The shipped table of supernet scores, its predictor off the table (docs/leaderboard.md).
    RewardSource("tabulated", "haq_rl.supernet.evaluators:tabulated_reward_evaluator", trained_weights=True,
                 pooled=False, start="supernet", prices="haq_rl.supernet.importance:tabulated_prices",
                 options="haq_rl.supernet.config:TabulatedConfig"),
)}
REWARD_SOURCES = tuple(REWARD_SOURCE_TABLE)
#: The source whose prices ``sensitivity=supernet`` reads on a reward without trained weights.
SUPERNET_PRICES_SOURCE = "supernet"

#: Every model start; ``auto`` (the fine-tune's default) is the reward source's.
MODEL_STARTS: dict[str, ModelStart] = {s.name: s for s in (
    # A copy of the task's float model, calibrated as the search's post-training quantization.
    ModelStart("float", "haq_rl.finetune.policy_model:float_start"),
    # The supernet's shared weights with the policy's learned steps (haq_rl.supernet.handoff).
    ModelStart("supernet", "haq_rl.supernet.handoff:supernet_start", quantizers=("lsq",), folds=False,
               why="the supernet's steps are LSQ steps learned on unfolded weights"),
)}
STARTS = ("auto", *MODEL_STARTS)


def reward_source_entry(name: str) -> RewardSource:
    """The table's row of ``name`` (UnknownNameError, with a suggestion, if there is none)."""
    try:
        return REWARD_SOURCE_TABLE[name]
    except KeyError:
        raise UnknownNameError("reward_source", str(name), REWARD_SOURCES) from None


def model_start(start: str, reward_source: str) -> ModelStart:
    """The start row ``start`` names; ``auto`` is the one ``reward_source`` scored."""
    name = reward_source_entry(reward_source).start if start == "auto" else start
    if name not in MODEL_STARTS:
        raise UnknownNameError("start", str(start), STARTS)
    return MODEL_STARTS[name]


def check_start(start: ModelStart, settings: StartSettings, picked_by: str | None = None) -> None:
    """ConfigError (one line) when ``start`` cannot start a model with ``settings``: the one
    home of the start x quantizer x fold_bn rule. ``picked_by`` names the reward source
    when ``start=auto`` chose it."""
    auto = f" (start=auto follows the {picked_by} reward; give start=float)" if picked_by else ""
    if start.quantizers is not None and settings.quantizer not in start.quantizers:
        raise ConfigError(f"start={start.name} needs quantizer={' or '.join(start.quantizers)} ({start.why}), "
                          f"not {settings.quantizer}{auto}")
    if settings.fold_bn and not start.folds:
        folding = " or ".join(s.name for s in MODEL_STARTS.values() if s.folds)
        raise ConfigError(f"fold_bn=true needs start={folding}: {start.why}{auto}")


def trained_prices(task: Any, progress: bool = True) -> Any:
    """Layer prices fitted on trained weights (``sensitivity=supernet``): the task's reward
    source's own, or the supernet's when its reward has none."""
    entry = reward_source_entry(task.spec.reward_source)
    prices = entry.prices or REWARD_SOURCE_TABLE[SUPERNET_PRICES_SOURCE].prices
    assert prices is not None
    return _load(prices)(task, progress=progress)


def _load(entry_point: str | None) -> Any:
    if entry_point is None:
        raise ConfigError("this row has no such entry point")
    module, _, attribute = entry_point.partition(":")
    return getattr(importlib.import_module(module), attribute)


def _pairs(given: Any, source: str) -> dict[str, Any]:
    """``given`` (a mapping, pairs, or None) as a dict with string keys, or ConfigError."""
    if given is None:
        return {}
    if isinstance(given, dict):
        pairs = list(given.items())
    elif isinstance(given, list | tuple) and all(isinstance(p, list | tuple) and len(p) == 2 for p in given):
        pairs = [tuple(p) for p in given]
    else:
        raise ConfigError(f"reward_options={given!r} must map settings of reward_source {source} to values, "
                          "e.g. {epochs: 1}")
    if not all(isinstance(key, str) for key, _ in pairs):
        raise ConfigError(f"reward_options={given!r} must have setting names as keys")
    return dict(pairs)
