"""run_search: the one entry to every method, and its run directory.

``run_search`` builds the task and its scorers (a :class:`SearchSetup`; the Gymnasium env
too for an RL method), writes config.json (:class:`~haq_rl.run.record.RunRecord`), and runs
the method the table names (:mod:`haq_rl.search.methods`): a proposer in the one loop
(:mod:`haq_rl.search.loop`), or the RL driver; then it returns the best policy within
budget. The run-directory layout is described in :mod:`haq_rl.search`. Every method scores
its policies with the same :class:`~haq_rl.task.scoring.PolicyScorer` (the RL methods
through ``env.step``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from haq_rl.errors import ConfigError, HaqError, MissingPathError
from haq_rl.fileio import check_writable_folder, remove_stale_temps
from haq_rl.parallel import attached_pool, import_ray
from haq_rl.progress import EpisodeBar
from haq_rl.run.episodes import read_episode_rows
from haq_rl.run.layout import CONFIG_FILE, EPISODES_FILE
from haq_rl.run.lock import run_lock
from haq_rl.run.record import RunRecord
from haq_rl.run.resolve import task_for
from haq_rl.search.checkpoint import refuse_lost_rows
from haq_rl.search.config import SearchConfig, resumed_config
from haq_rl.search.loop import run_proposals
from haq_rl.search.recorder import Recorder
from haq_rl.search.setup import SearchSetup
from haq_rl.shipped_models import float_model_record
from haq_rl.task.steps import step_schedule
from haq_rl.task.task import check_float_model

if TYPE_CHECKING:
    from haq_rl.task.task import Task

__all__ = ["Recorder", "SearchConfig", "SearchResult", "SearchSetup", "run_search"]

logger = logging.getLogger(__name__)


@dataclass
class SearchResult:
    """What a search found: the run directory, the best policy (per budget) and its costs in time."""

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


def bounded_workers(config: SearchConfig) -> SearchConfig:
    """``config`` with at most one worker per episode and, for local processes, per CPU this
    process may use (each worker holds a model copy and runs one torch thread: more only
    fork processes that wait). A lowered count is said in one warning."""
    limit, reason = config.episodes, f"one per episode ({config.episodes} episodes)"
    if config.backend == "process" and available_cpus() < limit:
        limit, reason = available_cpus(), f"one per CPU ({available_cpus()} CPUs)"
    if config.workers <= limit:
        return config
    logger.warning("--workers %d lowered to %d: %s", config.workers, limit, reason)
    return dataclasses.replace(config, workers=limit)


def available_cpus() -> int:
    """The CPUs this process may run on (its affinity mask, e.g. a container's or Slurm's share)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


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
    config = bounded_workers(config)
    check_writable_folder(run_dir, "run directory")
    if run_dir.exists():
        with run_lock(run_dir):  # an existing directory: a second writer fails before any work
            remove_stale_temps(run_dir)  # what a killed search left
            _check_fresh(run_dir, resume is not None)
            prepared = _prepare(config, task, run_dir)
            with _pool(prepared[0], config):
                return _search(*prepared, config, run_dir, resume is not None)
    # A new directory is made only once the task is ready: a search killed or failing while it
    # loads the model and data leaves nothing; the workers start first too, so an unreachable
    # cluster leaves no run directory.
    prepared = _prepare(config, task, run_dir)
    with _pool(prepared[0], config):
        created = not run_dir.exists()
        with run_lock(run_dir):
            try:
                _check_fresh(run_dir, False)
                return _search(*prepared, config, run_dir, False)
            finally:
                if created and not _holds_rows(run_dir):
                    # Failed (or stopped) before the first row: leave no run directory behind,
                    # so the same command, corrected, can run again on the same --out.
                    shutil.rmtree(run_dir, ignore_errors=True)


def _pool(setup: SearchSetup, config: SearchConfig) -> contextlib.AbstractContextManager[Any]:
    """The workers of ``config`` on the setup's evaluator, if its reward source is pooled."""
    from haq_rl.task.sources import reward_source_entry

    return attached_pool(setup.scorer.evaluator, config.workers, config.backend, config.ray_address,
                         source=reward_source_entry(setup.task.spec.reward_source))


def _holds_rows(run_dir: Path) -> bool:
    """Whether ``run_dir`` recorded an episode (an unreadable log counts: it is kept)."""
    if not (run_dir / EPISODES_FILE).exists():
        return False
    try:
        return bool(read_episode_rows(run_dir / EPISODES_FILE))
    except (HaqError, OSError):
        return True


def _check_fresh(run_dir: Path, resume: bool) -> None:
    if not resume and (run_dir / EPISODES_FILE).exists():
        raise ConfigError(f"run directory {run_dir} already holds a search; use --resume {run_dir} or another --out")


def _prepare(config: SearchConfig, given: Task | None, run_dir: Path) -> tuple[SearchSetup, float, float]:
    """The setup (task, scorers, and the env of an RL method) of ``config``, its start time and
    setup seconds; writes nothing."""
    from haq_rl.seeding import seed_everything
    from haq_rl.task.scoring import scorer_for_task

    if config.backend == "ray":
        import_ray()  # a missing extra fails before the task loads
    seed_everything(config.seed)
    started = time.perf_counter()
    task = task_for(config.task_spec(), given, **config.spec_overrides())
    if config.entry.agent:
        from haq_rl.env.factory import env_for_task

        env = env_for_task(task, progress=config.progress)  # --no-progress: no supernet or predictor bars
        setup = SearchSetup(task=task, scorer=env.scorer, env=env, run_dir=run_dir)
    else:  # a proposer: no gymnasium
        setup = SearchSetup(task=task, scorer=scorer_for_task(task, progress=config.progress), run_dir=run_dir)
    # The float accuracy is first known here, before any episode or file: a float model at
    # chance stops the search with its likely causes.
    check_float_model(task, setup.scorer.evaluator.float_accuracy)
    return setup, started, time.perf_counter() - started


def _search(setup: SearchSetup, started: float, setup_seconds: float, config: SearchConfig, run_dir: Path,
            resume: bool) -> SearchResult:
    """Write config.json (a new run), record the method's episodes, return the result."""
    task, scorer, spec = setup.task, setup.scorer, setup.task.spec
    if resume:
        refuse_lost_rows(run_dir)  # before the recorder repairs the log and rewrites the policy files
    else:
        RunRecord(
            search=config.to_dict(), spec=spec, layers=scorer.layer_names,
            layer_specs=[layer.to_dict() for layer in task.layers],
            steps_per_episode=len(step_schedule(scorer.pinned, scorer.weight_only, spec.step_mode)),
            float_accuracy=scorer.evaluator.float_accuracy, float_test_accuracy=_float_test_accuracy(task),
            float_model=float_model_record(task.meta), reference_cost=scorer.reference_cost,
            budget_cost=scorer.budget_cost).write(run_dir)
    bar = EpisodeBar(config.episodes, f"search {config.method}") if config.progress else None
    recorder = Recorder(run_dir, scorer, spec, config, progress=_bar_update(bar) if bar else None)
    if bar is not None:
        bar.start(recorder.count)
    try:
        if config.entry.agent:  # an RL driver steps the env itself
            config.entry.load()(setup, config, recorder)
        else:
            run_proposals(config.entry.load()(setup, config), setup, config, recorder)
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
