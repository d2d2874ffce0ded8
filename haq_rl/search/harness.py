"""The harness every method shares: SearchConfig, the episode recorder, run_search.

``run_search`` builds the task, its scorer and the env over them (a :class:`SearchSetup`),
writes config.json, hands the setup and a :class:`Recorder` to the method's runner
(:func:`_method_runner`), and returns the best policy within budget; the run-directory
layout is described in :mod:`haq_rl.search`. Every method scores its policies with the
same :class:`~haq_rl.task.scoring.PolicyScorer` (the RL methods through ``env.step``).
"""

from __future__ import annotations

import dataclasses
import logging
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from haq_rl import __version__
from haq_rl.errors import (
    ConfigError,
    DataFormatError,
    HaqError,
    MissingPathError,
    UnknownNameError,
    unknown_name_message,
)
from haq_rl.fileio import (
    check_writable_folder,
    finite_or_none,
    remove_stale_temps,
    write_json_atomic,
    write_text_atomic,
)
from haq_rl.parallel import attached_pool, check_backend, import_ray
from haq_rl.progress import EpisodeBar
from haq_rl.run.config import RunConfig, read_run_config
from haq_rl.run.episodes import EpisodeLog, episode_columns
from haq_rl.run.layout import (
    BEST_POLICY_FILE,
    CONFIG_FILE,
    EPISODES_FILE,
    FRONT_FILE,
    budget_policy_path,
)
from haq_rl.run.lock import run_lock
from haq_rl.search.checkpoint import refuse_lost_rows
from haq_rl.shipped_models import float_model_record
from haq_rl.task.spec import DEFAULT_ENV_ID, TaskSpec, checked_budgets, resolve_spec

if TYPE_CHECKING:
    from haq_rl.env.quant_env import QuantizationEnv
    from haq_rl.task.scoring import PolicyScorer
    from haq_rl.task.task import Task

logger = logging.getLogger(__name__)

RL_METHODS = ("guided", "ddpg", "td3", "sac")
BASELINE_METHODS = ("random", "uniform", "greedy", "hawq", "tpe", "nsga2")
METHODS = RL_METHODS + BASELINE_METHODS
#: Methods that search several budgets in one run (``budgets=``, ``--budgets``).
CONDITIONED_METHODS = RL_METHODS + ("random", "uniform", "hawq", "nsga2")

_SENSITIVITY_OPTIONS: dict[str, Any] = {"probes": 32, "images": 256, "activations": "separate",
                                        "sensitivity": "hessian"}

#: Settings each method accepts in ``SearchConfig.options`` (``--option KEY=VALUE``), with defaults.
METHOD_OPTIONS: dict[str, dict[str, Any]] = {
    # HAWQ-V3-style sensitivity + integer program (see haq_rl.search.hawq).
    "hawq": dict(_SENSITIVITY_OPTIONS),
    # Optuna's multivariate TPE (see haq_rl.search.tpe).
    "tpe": {"startup_trials": 10},
    # Optuna's NSGA-II over (reward, cost) (see haq_rl.search.nsga2).
    "nsga2": {"population": 16},
    # DDPG anchored on the hawq integer program (see haq_rl.search.rl); anchor_sigma is the
    # warm-up noise around the anchor in HAQ's [0, 1] action units.
    "guided": {**_SENSITIVITY_OPTIONS, "anchor_sigma": 0.04, "imitation_steps": 50},
}

ACTIVATION_MODES = ("tied", "separate")
#: Where the integer program's per-layer prices come from: HAWQ's Hessian traces, or the
#: task's supernet (an additive fit on its evaluations, LIMPQ-style; haq_rl.supernet.importance).
SENSITIVITY_SOURCES = ("hessian", "supernet")


def _integer_at_least(minimum: int) -> Callable[[Any], bool]:
    return lambda v: not isinstance(v, bool) and isinstance(v, int) and v >= minimum


#: What each option's value must be (one rule per option name, whichever method takes it).
_OPTION_RULES: dict[str, tuple[Callable[[Any], bool], str]] = {
    "probes": (_integer_at_least(1), "an integer >= 1"),
    "images": (_integer_at_least(1), "an integer >= 1"),
    "activations": (lambda v: v in ACTIVATION_MODES, "one of " + ", ".join(ACTIVATION_MODES)),
    "sensitivity": (lambda v: v in SENSITIVITY_SOURCES, "one of " + ", ".join(SENSITIVITY_SOURCES)),
    "startup_trials": (_integer_at_least(1), "an integer >= 1"),
    "population": (_integer_at_least(2), "an integer >= 2"),
    "imitation_steps": (_integer_at_least(0), "an integer >= 0"),
    "anchor_sigma": (lambda v: not isinstance(v, bool) and isinstance(v, int | float) and 0 <= v <= 1,
                     "a number in [0, 1]"),
}


@dataclass(frozen=True)
class SearchConfig:
    """One search. The CLI maps its flags onto these fields one to one.

    ``env`` is a registered id or a YAML spec path; ``budget``, ``hardware``,
    ``objective``, ``model`` (a zoo name or ``package.module:factory``) and ``weights`` (a
    state_dict file: the model is used as trained, nothing is pretrained) override the
    spec when given. ``budgets`` (ascending ratios) makes one budget-conditioned search of
    all of them (methods in :data:`CONDITIONED_METHODS`; not with ``budget``);
    ``extra_budgets`` (``{objective: ratio}``) adds constraints every policy must meet too.
    ``agent`` holds AgentConfig fields to override for RL methods (e.g.
    ``{"warmup_episodes": 5}``).
    """

    env: str = DEFAULT_ENV_ID
    method: str = "guided"
    episodes: int = 80
    budget: float | None = None
    budgets: tuple[float, ...] | None = None
    extra_budgets: dict[str, float] | None = None
    hardware: str | None = None
    objective: str | None = None
    model: str | None = None
    weights: str | None = None
    seed: int = 0
    out: str | None = None
    device: str = "cpu"
    checkpoint_every: int = 10
    progress: bool = True
    # Parallel evaluation (haq_rl.parallel, docs/scaling.md): workers, process or ray, a Ray cluster.
    workers: int = 1
    backend: str = "process"
    ray_address: str | None = None
    env_overrides: dict[str, Any] = field(default_factory=dict)
    agent: dict[str, Any] = field(default_factory=dict)
    options: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise UnknownNameError("search method", self.method, METHODS)
        if not isinstance(self.episodes, int) or self.episodes < 1:
            raise ConfigError(f"episodes={self.episodes!r} must be an integer >= 1")
        if self.budgets is not None:
            object.__setattr__(self, "budgets", checked_budgets(self.budgets))
            if self.budget is not None:
                raise ConfigError("give either budget (one) or budgets (a conditioned search), not both")
            if self.method not in CONDITIONED_METHODS:
                raise ConfigError(f"method {self.method} searches one budget; methods that take budgets: "
                                  f"{', '.join(CONDITIONED_METHODS)}")
        if not isinstance(self.seed, int) or self.seed < 0:
            raise ConfigError(f"seed={self.seed!r} must be an integer >= 0")
        if not isinstance(self.checkpoint_every, int) or self.checkpoint_every < 1:
            raise ConfigError(f"checkpoint_every={self.checkpoint_every!r} must be an integer >= 1")
        if self.device not in ("cpu", "cuda", "auto") and not str(self.device).startswith("cuda:"):
            raise ConfigError(f"device={self.device!r} must be cpu, cuda, cuda:N or auto")
        check_backend(self.workers, self.backend, self.ray_address)
        if self.budgets is not None and self.workers > 1 and self.method in RL_METHODS:
            raise ConfigError(f"method {self.method} with budgets runs one worker (the conditioned agent "
                              "has no batched driver yet); drop --workers or --budgets")
        self._check_agent()
        allowed = METHOD_OPTIONS.get(self.method, {})
        for key, value in self.options.items():
            if key not in allowed:
                raise ConfigError(unknown_name_message(f"option of method {self.method}", key, list(allowed))
                                  if allowed else f"method {self.method} takes no options (got {key!r})")
            valid, expected = _OPTION_RULES[key]
            if not valid(value):
                raise ConfigError(f"{self.method} option {key}={value!r} must be {expected}")

    def _check_agent(self) -> None:
        """Unknown or bad agent settings fail here, before a run directory is written."""
        if not self.agent:
            return
        if self.method not in RL_METHODS:
            raise ConfigError(f"method {self.method} has no agent; --agent settings are for "
                              f"{', '.join(RL_METHODS)} (got {', '.join(map(str, self.agent))})")
        from haq_rl.agent.config import AgentConfig

        names = [f.name for f in dataclasses.fields(AgentConfig) if f.name != "seed"]
        for key in self.agent:
            if key not in names:
                raise ConfigError(unknown_name_message("agent setting", str(key), names))
        AgentConfig(**{"algo": "ddpg" if self.method == "guided" else self.method, **self.agent})

    def method_options(self) -> dict[str, Any]:
        """The method's settings: its defaults with ``options`` on top."""
        return {**METHOD_OPTIONS.get(self.method, {}), **self.options}

    def spec_overrides(self) -> dict[str, Any]:
        """The spec fields this search sets: ``env_overrides`` and the fields given here."""
        overrides = dict(self.env_overrides)
        for name in ("budget", "budgets", "extra_budgets", "hardware", "objective", "model", "weights"):
            if getattr(self, name) is not None:
                overrides[name] = getattr(self, name)
        return overrides

    def env_spec(self) -> TaskSpec:
        return resolve_spec(self.env).replace(**{**self.spec_overrides(), "device": self.device})

    def default_run_dir(self, task: Task | None = None) -> Path:
        name = (task.spec if task is not None else self.env_spec()).id.split("/")[-1]
        return Path("runs") / f"{name}-{self.method}-s{self.seed}"

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SearchConfig:
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ConfigError(f"unknown search setting(s) {', '.join(map(repr, unknown))}; "
                              f"allowed: {', '.join(sorted(names))}")
        if isinstance(data.get("budgets"), list):  # JSON has no tuples
            data = {**data, "budgets": tuple(data["budgets"])}
        try:
            return cls(**data)
        except (TypeError, AttributeError) as error:  # a value of the wrong kind, e.g. options: 5
            raise ConfigError(f"invalid search settings: {error}") from None


#: What ``--resume`` may change (``resume_changes``); everything else is the run's own.
RESUME_CHANGES = ("episodes", "workers", "backend", "ray_address", "progress", "checkpoint_every")


def saved_search_config(saved: RunConfig) -> SearchConfig:
    """The SearchConfig a run's config.json recorded (one-line DataFormatError if it is bad)."""
    try:
        return SearchConfig.from_dict(saved.search)
    except HaqError as error:
        raise DataFormatError(f"{saved.path}: search settings: {error}") from None


def resumed_config(run_dir: Path, changes: dict[str, Any]) -> SearchConfig:
    """The saved search of ``run_dir`` with ``changes`` (keys of :data:`RESUME_CHANGES`) applied.

    More or fewer episodes than before are allowed, but not fewer than the run has
    recorded; another seed, method, env or agent would make a different search, so those
    are refused with one line.
    """
    saved = saved_search_config(read_run_config(run_dir))
    refused = sorted(set(changes) - set(RESUME_CHANGES))
    if refused:
        raise ConfigError(f"--resume continues the search {run_dir} recorded; {', '.join(refused)} cannot change "
                          f"(only {', '.join(RESUME_CHANGES)} can); start a new search with another --out")
    try:
        config = dataclasses.replace(saved, **changes)
    except HaqError as error:
        raise ConfigError(f"--resume {run_dir}: {error}") from None
    if config.episodes < saved.episodes:
        from haq_rl.run.episodes import read_episode_rows

        done = len(read_episode_rows(run_dir / EPISODES_FILE)) if (run_dir / EPISODES_FILE).is_file() else 0
        if config.episodes < done:
            raise ConfigError(f"--episodes {config.episodes} is fewer than the {done} episodes {run_dir} "
                              "has recorded")
    return config


@dataclass
class SearchResult:
    run_dir: Path
    best: dict[str, Any]
    episodes: int
    evaluations: int
    wall_time_s: float
    best_policy_path: Path
    eval_seconds: float = 0.0
    setup_seconds: float = 0.0
    #: Conditioned runs: budget -> best policy within it (one entry, the budget, otherwise).
    best_by_budget: dict[float, dict[str, Any]] = field(default_factory=dict)

    @property
    def best_accuracy(self) -> float:
        return float(self.best["accuracy"])

    @property
    def best_cost_ratio(self) -> float:
        return float(self.best["cost_ratio"])


@dataclass
class SearchSetup:
    """What a method searches with: the task, its scorer and the Gymnasium env over both.

    Baselines score policies with ``scorer``; the RL methods step ``env``, whose episodes
    end in the same ``scorer.score``.
    """

    task: Task
    scorer: PolicyScorer
    env: QuantizationEnv


#: The metrics a Recorder keeps of a best policy (and writes into its policy JSON).
_BEST_KEYS = ("reward", "accuracy", "cost_ratio", "latency_ms", "energy_uj", "size_bytes", "bops")


class Recorder:
    """Turns end-of-episode infos into episodes.csv rows and tracks the best policy.

    A conditioned run (``spec.budgets``) tracks the best policy of every budget: a policy
    counts for every listed budget it meets, whichever budget its episode ran under, so one
    evaluation serves all of them. Its rows carry the episode's ``budget``; rows of a run
    with extra budgets carry ``ratio:<objective>`` for each.
    """

    def __init__(self, run_dir: Path, scorer: PolicyScorer, spec: TaskSpec, config: SearchConfig,
                 progress: Callable[[dict[str, Any]], None] | None = None) -> None:
        self.run_dir = run_dir
        self.scorer = scorer
        self.spec = spec
        self.config = config
        self.budgets: tuple[float, ...] = spec.budgets or (scorer.budget_ratio,)
        self.conditioned = bool(spec.budgets)
        extra = (["budget"] if self.conditioned else []) + [f"ratio:{name}" for name in scorer.extra_budgets]
        self.log = EpisodeLog(run_dir / EPISODES_FILE, episode_columns(scorer.layer_names, extra))
        self.best_by_budget: dict[float, dict[str, Any]] = {}
        self.count = 0
        self.progress = progress
        self.reset_from_log()

    @property
    def best(self) -> dict[str, Any] | None:
        """The best policy within the (loosest) budget, or None."""
        return self.best_by_budget.get(self.budgets[-1])

    def reset_from_log(self) -> None:
        """Restore the count and the best policies from the rows on disk (resumed runs)."""
        self.count = 0
        self.best_by_budget = {}
        for row in self.log.read_rows():
            self._consider(_row_to_info(row, self.scorer.layer_names))
            self.count += 1
        # The policy files may describe a row that a resume just dropped: rewrite them.
        for budget in self.budgets:
            if budget in self.best_by_budget:
                self._write_best(budget)
            else:
                self.policy_path(budget).unlink(missing_ok=True)
        if self.conditioned:
            self._write_front()

    def record(self, info: dict[str, Any], phase: str) -> list[float]:
        """Append the episode's row; returns the budgets whose best policy it became."""
        row = {
            "episode": self.count, "phase": phase, **{c: info.get(c) for c in (
                "reward", "accuracy", "cost_ratio", "latency_ms", "energy_uj", "size_bytes",
                "bops", "bits_lowered")},
        }
        if self.conditioned:
            row["budget"] = info["budget_ratio"]
        for name, ratio in info.get("cost_ratios", {}).items():
            if name in self.scorer.extra_budgets:
                row[f"ratio:{name}"] = ratio
        for name, w, a in zip(self.scorer.layer_names, info["w_bits"], info["a_bits"], strict=True):
            row[f"w:{name}"] = int(w)
            row[f"a:{name}"] = int(a)
        self.log.append(row)
        improved = self._consider(info)
        for budget in improved:
            self._write_best(budget)
        if improved and self.conditioned:
            self._write_front()
        self.count += 1
        if self.progress is not None:
            self.progress({**(self.best or {}), "episode": self.count})
        return improved

    def _consider(self, info: dict[str, Any]) -> list[float]:
        improved = []
        for budget in self.budgets:
            if not self.scorer.is_within(info["cost_ratio"], info.get("cost_ratios"), budget=budget):
                continue
            best = self.best_by_budget.get(budget)
            if best is None or info["reward"] > best["reward"]:
                kept = {k: info[k] for k in (*_BEST_KEYS, "w_bits", "a_bits")}
                kept["episode"] = self.count
                if "cost_ratios" in info:
                    kept["cost_ratios"] = dict(info["cost_ratios"])
                self.best_by_budget[budget] = kept
                improved.append(budget)
        return improved

    def policy_path(self, budget: float) -> Path:
        return budget_policy_path(self.run_dir, budget) if self.conditioned else self.run_dir / BEST_POLICY_FILE

    def _write_best(self, budget: float) -> None:
        best = self.best_by_budget[budget]
        path = self.policy_path(budget)
        path.parent.mkdir(parents=True, exist_ok=True)
        write_policy_json(path, self.scorer, self.spec, best, budget=budget, method=self.config.method,
                          seed=self.config.seed)

    def _write_front(self) -> None:
        """front.csv: one row per budget with its best policy so far (the accuracy-cost front)."""
        import pandas as pd

        rows = [{"budget": budget, "episode": best["episode"],
                 **{key: finite_or_none(best[key]) for key in _BEST_KEYS},
                 "mean_w_bits": float(np.mean(best["w_bits"])), "mean_a_bits": float(np.mean(best["a_bits"]))}
                for budget, best in sorted(self.best_by_budget.items())]
        write_text_atomic(self.run_dir / FRONT_FILE, pd.DataFrame(rows).to_csv(index=False))


def write_policy_json(path: Path, scorer: PolicyScorer, spec: TaskSpec, best: dict[str, Any], *,
                      budget: float, method: str, seed: int) -> None:
    """A best policy's JSON with the metadata finetune, evaluate, export and the report read."""
    from haq_rl.quant import QuantPolicy

    policy = QuantPolicy.from_arrays(scorer.layer_names, best["w_bits"], best["a_bits"])
    table = scorer.cost_table
    metrics = {k: finite_or_none(best[k]) for k in _BEST_KEYS}
    extra: dict[str, Any] = {}
    if spec.extra_budgets:  # several constraints: each budget and each ratio
        extra["extra_budgets"] = dict(spec.extra_budgets)
        metrics.update({f"{name}_ratio": finite_or_none(ratio) for name, ratio in best["cost_ratios"].items()})
    policy.to_json(
        path,
        model=spec.model, dataset=spec.dataset, input_size=spec.input_size,
        env_id=spec.id, profile=getattr(table, "profile_name", spec.hardware),
        profile_sha256=getattr(table, "profile_sha256", None), objective=spec.objective,
        budget=budget, **extra, method=method, seed=seed,
        metrics=metrics, float_accuracy=scorer.evaluator.float_accuracy,
        episode=None if best.get("episode") is None else int(best["episode"]),
        haq_rl_version=__version__,
    )


def _row_to_info(row: dict[str, str], layer_names: list[str]) -> dict[str, Any]:
    info: dict[str, Any] = {k: float(row[k]) if row.get(k) not in (None, "") else float("nan")
                            for k in _BEST_KEYS}
    info["w_bits"] = np.array([int(row[f"w:{n}"]) for n in layer_names])
    info["a_bits"] = np.array([int(row[f"a:{n}"]) for n in layer_names])
    ratios = {key.split(":", 1)[1]: float(value) for key, value in row.items() if key.startswith("ratio:")}
    if ratios:
        info["cost_ratios"] = ratios
    return info


def run_search(config: SearchConfig, resume: str | Path | None = None, task: Task | None = None,
               resume_changes: dict[str, Any] | None = None) -> SearchResult:
    """Run (or, with ``resume``, continue) a search and write its run directory.

    A resume continues the search that ``resume``'s config.json recorded; of ``config`` it
    takes only ``progress``, and it applies ``resume_changes`` (``{"episodes": 120}``; the
    keys of :data:`RESUME_CHANGES`, others are refused).

    ``task`` searches a :class:`~haq_rl.task.Task` you built (``Task.from_model``) instead of
    the one ``config.env`` names; ``config``'s budget, hardware and objective still apply.

    The run directory is locked for the whole search: a second process on it fails at
    once with :class:`~haq_rl.errors.RunLockedError`.
    """
    if resume is not None:
        run_dir = Path(resume)
        if not (run_dir / CONFIG_FILE).is_file():
            raise MissingPathError(f"cannot resume: {run_dir / CONFIG_FILE} not found (is {run_dir} a run directory?)")
        config = resumed_config(run_dir, {"progress": config.progress, **(resume_changes or {})})
    else:
        run_dir = Path(config.out) if config.out else config.default_run_dir(task)
    check_writable_folder(run_dir, "run directory")
    if run_dir.exists():
        with run_lock(run_dir):  # an existing directory: a second writer fails before any work
            remove_stale_temps(run_dir)  # what a killed search left
            _check_fresh(run_dir, resume is not None)
            prepared = _prepare(config, task)
            with attached_pool(prepared[0].scorer.evaluator, config.workers, config.backend, config.ray_address):
                return _search(*prepared, config, run_dir, resume is not None)
    # A new directory is made only once the task is ready: a search killed or failing while it
    # loads the model and data leaves nothing; the workers start first too, so an unreachable
    # cluster leaves no run directory.
    prepared = _prepare(config, task)
    with attached_pool(prepared[0].scorer.evaluator, config.workers, config.backend, config.ray_address):
        created = not run_dir.exists()
        with run_lock(run_dir):
            try:
                _check_fresh(run_dir, False)
                return _search(*prepared, config, run_dir, False)
            finally:
                if created and not (run_dir / CONFIG_FILE).exists():
                    # Failed before anything was recorded: leave no run directory behind.
                    shutil.rmtree(run_dir, ignore_errors=True)


def _check_fresh(run_dir: Path, resume: bool) -> None:
    if not resume and (run_dir / EPISODES_FILE).exists():
        raise ConfigError(f"run directory {run_dir} already holds a search; use --resume {run_dir} or another --out")


def _prepare(config: SearchConfig, given: Task | None) -> tuple[SearchSetup, float, float]:
    """The setup (task, scorer, env) of ``config``, its start time and setup seconds; writes nothing."""
    from haq_rl.env.factory import env_for_task
    from haq_rl.seeding import seed_everything
    from haq_rl.task.task import load_task

    if config.backend == "ray":
        import_ray()  # a missing extra fails before the task loads
    seed_everything(config.seed)
    started = time.perf_counter()
    if given is not None:
        task = given.with_settings(**config.spec_overrides())
    else:
        task = load_task(config.env_spec())
    env = env_for_task(task)
    setup = SearchSetup(task=task, scorer=env.scorer, env=env)
    return setup, started, time.perf_counter() - started


def _search(setup: SearchSetup, started: float, setup_seconds: float, config: SearchConfig, run_dir: Path,
            resume: bool) -> SearchResult:
    """Write config.json (a new run), record the method's episodes, return the result."""
    task, scorer, env, spec = setup.task, setup.scorer, setup.env, setup.task.spec
    if not resume:
        write_json_atomic(run_dir / CONFIG_FILE, {
            "format_version": 1, "haq_rl_version": __version__, "search": config.to_dict(),
            "env": spec.to_dict(), "layers": scorer.layer_names,
            "layer_specs": [layer.to_dict() for layer in task.layers],
            "steps_per_episode": env.steps_per_episode, "float_accuracy": scorer.evaluator.float_accuracy,
            "float_test_accuracy": _float_test_accuracy(task),
            "float_model": float_model_record(task.meta),  # which float model, by its SHA-256
            "reference_cost": scorer.reference_cost, "budget_cost": scorer.budget_cost,
        })
    if resume:
        refuse_lost_rows(run_dir)  # before the recorder repairs the log and rewrites the policy files
    bar = EpisodeBar(config.episodes, f"search {config.method}") if config.progress else None
    recorder = Recorder(run_dir, scorer, spec, config, progress=_bar_update(bar) if bar else None)
    if bar is not None:
        bar.start(recorder.count)
    try:
        _method_runner(config.method)(setup, config, recorder)
    finally:
        if bar is not None:
            bar.close()
    missing = [budget for budget in recorder.budgets if budget not in recorder.best_by_budget]
    if missing:
        raise ConfigError(f"no evaluated policy met the budget {', '.join(f'{b:g}' for b in missing)} "
                          f"in {run_dir} (more episodes may find one)")
    best = recorder.best
    assert best is not None
    return SearchResult(
        run_dir=run_dir, best=best, episodes=recorder.count,
        evaluations=scorer.evaluator.evaluations, wall_time_s=time.perf_counter() - started,
        best_policy_path=recorder.policy_path(recorder.budgets[-1]), eval_seconds=scorer.evaluator.eval_seconds,
        setup_seconds=setup_seconds, best_by_budget=dict(recorder.best_by_budget))


def _float_test_accuracy(task: Task) -> float:
    """The float model's top-1 on the test split (recorded beside the reward split's)."""
    from haq_rl.data import make_loader
    from haq_rl.training import evaluate_accuracy

    return evaluate_accuracy(task.model, make_loader(task.splits.test, batch_size=256), metric=task.metric)


def _bar_update(bar: EpisodeBar) -> Callable[[dict[str, Any]], None]:
    """The recorder's progress callback: episodes done and the best policy so far."""
    def update(info: dict[str, Any]) -> None:
        best = {f"best_{key}": info[key] for key in ("reward", "accuracy", "cost_ratio") if key in info}
        bar.show(info["episode"], best)
    return update


def _method_runner(method: str) -> Callable[[SearchSetup, SearchConfig, Recorder], None]:
    """The function that runs ``method`` (imported on demand: SB3, scipy, optuna)."""
    if method in RL_METHODS:
        from haq_rl.search.rl import search_rl

        return search_rl
    if method == "hawq":
        from haq_rl.search.hawq import search_hawq

        return search_hawq
    if method == "tpe":
        from haq_rl.search.tpe import search_tpe

        return search_tpe
    if method == "nsga2":
        from haq_rl.search.nsga2 import search_nsga2

        return search_nsga2
    from haq_rl.search import baselines

    return {"random": baselines.search_random, "uniform": baselines.search_uniform,
            "greedy": baselines.search_greedy}[method]
