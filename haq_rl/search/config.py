"""SearchConfig, the settings of one search, and what a ``--resume`` may change of them.

Every setting is checked when a SearchConfig is built (the method's ``options`` and
``agent`` settings through the methods table, :mod:`haq_rl.search.methods`), so a bad one
fails in one line before any file is written.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from haq_rl.errors import (
    ConfigError,
    DataFormatError,
    HaqError,
    check_device,
    check_integer,
    check_seed,
    unknown_name_message,
)
from haq_rl.models.user import model_from_file, name_user_model
from haq_rl.parallel import check_backend
from haq_rl.run.config import RunConfig, read_run_config
from haq_rl.run.layout import CONFIG_FILE, EPISODES_FILE
from haq_rl.search.methods import CONDITIONED_METHODS, RL_METHODS, Method, method_entry
from haq_rl.task.spec import DEFAULT_ENV_ID, TaskSpec, checked_budgets, resolve_spec

if TYPE_CHECKING:
    from haq_rl.task.task import Task


@dataclass(frozen=True)
class SearchConfig:
    """One search. The CLI maps its flags onto these fields one to one.

    ``env`` is a registered id or a YAML spec path; ``budget``, ``hardware``,
    ``objective``, ``model`` (a zoo name or ``package.module:factory``) and ``weights`` (a
    state_dict file: the model is used as trained, nothing is pretrained) override the
    spec when given. ``budgets`` (ascending ratios) makes one budget-conditioned search of
    all of them (methods in :data:`~haq_rl.search.methods.CONDITIONED_METHODS`; not with
    ``budget``); ``extra_budgets`` (``{objective: ratio}``) adds constraints every policy
    must meet too. ``agent`` holds AgentConfig fields to override for RL methods (e.g.
    ``{"warmup_episodes": 5}``); ``options`` the method's settings (``--option``).
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
        entry = method_entry(self.method)
        check_integer("episodes", self.episodes, 1)
        if self.budgets is not None:
            object.__setattr__(self, "budgets", checked_budgets(self.budgets))
            if self.budget is not None:
                raise ConfigError("give either budget (one) or budgets (a conditioned search), not both")
            if not entry.conditions:
                raise ConfigError(f"method {self.method} searches one budget; methods that take budgets: "
                                  f"{', '.join(CONDITIONED_METHODS)}")
        check_seed("seed", self.seed)
        check_integer("checkpoint_every", self.checkpoint_every, 1)
        check_device(self.device)
        check_backend(self.workers, self.backend, self.ray_address)
        self._check_agent(entry)
        entry.parse_options(self.options)

    def _check_agent(self, entry: Method) -> None:
        """Unknown or bad agent settings fail here, before a run directory is written."""
        if not self.agent:
            return
        if not entry.agent:
            raise ConfigError(f"method {self.method} has no agent; --agent settings are for "
                              f"{', '.join(RL_METHODS)} (got {', '.join(map(str, self.agent))})")
        from haq_rl.agent.config import AgentConfig

        names = [f.name for f in dataclasses.fields(AgentConfig) if f.name != "seed"]
        for key in self.agent:
            if key not in names:
                raise ConfigError(unknown_name_message("agent setting", str(key), names))
        AgentConfig(**{"algo": entry.algo, **entry.agent_defaults, **self.agent})

    @property
    def entry(self) -> Method:
        """The method's row of the methods table."""
        return method_entry(self.method)

    def method_options(self) -> Any:
        """The method's settings, typed: an instance of its row's options dataclass (its
        defaults with ``options`` on top), or None for a method without options."""
        return self.entry.parse_options(self.options)

    def spec_overrides(self) -> dict[str, Any]:
        """The spec fields this search sets: ``env_overrides`` and the fields given here."""
        overrides = dict(self.env_overrides)
        for name in ("budget", "budgets", "extra_budgets", "hardware", "objective", "model", "weights"):
            if getattr(self, name) is not None:
                overrides[name] = getattr(self, name)
        return overrides

    def task_spec(self) -> TaskSpec:
        """The task spec this search runs: ``env``'s, with the settings given here on top."""
        return resolve_spec(self.env).replace(**{**self.spec_overrides(), "device": self.device})

    def default_run_dir(self, task: Task | None = None) -> Path:
        """``runs/<env>-<method>-s<seed>``; a user's model is named by itself and its weights'
        hash (``runs/nets.make-1a2b3c4d-guided-s0``), not by the env whose data it borrows."""
        from haq_rl.task.label import folder_label

        spec = task.spec if task is not None else self.task_spec()
        return Path("runs") / f"{folder_label(spec)}-{self.method}-s{self.seed}"

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


_UNSET = object()

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
    changes = dict(changes)
    given_model = changes.pop("model", None)
    if given_model is not None:  # the run's user model named again: vouched for, not a change
        name_user_model(str(given_model))
    saved = saved_search_config(read_run_config(run_dir))
    # A flag repeating the run's own value changes nothing.
    changes = {key: value for key, value in changes.items()
               if key in RESUME_CHANGES or getattr(saved, key, _UNSET) != value}
    if given_model is not None and given_model != saved.task_spec().model:
        changes["model"] = given_model  # another model: refused below
    refused = sorted(set(changes) - set(RESUME_CHANGES))
    if refused:
        raise ConfigError(f"--resume continues the search {run_dir} recorded; {', '.join(refused)} cannot change "
                          f"(only {', '.join(RESUME_CHANGES)} can); start a new search with another --out")
    try:
        config = dataclasses.replace(saved, **changes)
    except HaqError as error:
        raise ConfigError(f"--resume {run_dir}: {error}") from None
    # The env may be a YAML file that config.json names: its model is read from a file too.
    model_from_file(config.task_spec().model, f"{run_dir / CONFIG_FILE} (env {config.env})")
    if config.episodes < saved.episodes:
        from haq_rl.run.episodes import read_episode_rows

        done = len(read_episode_rows(run_dir / EPISODES_FILE)) if (run_dir / EPISODES_FILE).is_file() else 0
        if config.episodes < done:
            raise ConfigError(f"--episodes {config.episodes} is fewer than the {done} episodes {run_dir} "
                              "has recorded")
    return config
