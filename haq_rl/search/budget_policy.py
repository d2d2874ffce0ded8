"""One budget of a budget-conditioned run: its best policy, or the trained actor's at a new budget."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

from haq_rl.errors import ConfigError, MissingPathError, check_budget
from haq_rl.run.config import read_run_config
from haq_rl.run.layout import ACTOR_FILE, CONFIG_FILE, budget_policy_path
from haq_rl.run.lock import run_lock
from haq_rl.run.resolve import task_for
from haq_rl.search.config import SearchConfig, saved_search_config
from haq_rl.search.methods import RL_METHODS
from haq_rl.search.recorder import write_policy_json
from haq_rl.task.spec import TaskSpec

if TYPE_CHECKING:
    from haq_rl.task.task import Task

logger = logging.getLogger(__name__)

#: The ``method`` a rolled-out policy's JSON records, after the run's own method.
ACTOR_SUFFIX = " actor"


def budget_policy(run_dir: str | Path, budget: float, task: Task | None = None) -> Path:
    """best_policy.json of ``budget`` in a conditioned run (``--budgets``).

    A listed budget gives the best policy the search found within it. Any other
    feasible budget is served by the run's trained actor: one noise-free rollout at that
    budget (the budget is an observation feature), walled and evaluated once, written to
    the budget's folder (``method`` ``"<method> actor"``) and reused on the next call.
    ``task`` is the run's :class:`~haq_rl.task.Task` when it was searched with one built in
    Python.
    """
    run_dir = Path(run_dir)
    if not (run_dir / CONFIG_FILE).is_file():
        raise MissingPathError(f"--budget needs a run directory; {run_dir / CONFIG_FILE} not found")
    saved = read_run_config(run_dir)
    search = saved_search_config(saved)
    spec = saved.spec
    if not spec.budgets:
        raise ConfigError(f"{run_dir} searched one budget ({spec.budget:g}); --budget picks a budget of a run "
                          "searched with --budgets")
    budget = check_budget("--budget", budget)
    path = budget_policy_path(run_dir, budget)
    if budget in spec.budgets:
        if not path.is_file():
            raise MissingPathError(f"{path} not found: the search of {run_dir} has not finished budget {budget:g}")
        return path
    if path.is_file():
        return path
    if search.method not in RL_METHODS or not (run_dir / ACTOR_FILE).is_file():
        raise ConfigError(f"budget {budget:g} was not searched in {run_dir} (budgets "
                          f"{', '.join(f'{b:g}' for b in spec.budgets)}); other budgets need the trained agent "
                          f"of an RL method, and method {search.method} has none")
    with run_lock(run_dir):
        return _roll_out(run_dir, search, spec, budget, path, task)


def _roll_out(run_dir: Path, search: SearchConfig, spec: TaskSpec, budget: float, path: Path,
              given: Task | None) -> Path:
    from haq_rl.agent import load_actor
    from haq_rl.env.factory import env_for_task
    from haq_rl.search.rl import deterministic_rollout

    task = task_for(spec, given, budgets=spec.budgets)
    env = env_for_task(task)
    agent = load_actor(run_dir / ACTOR_FILE, env)  # the actor's weights, nothing else of the run
    info = deterministic_rollout(env, agent, budget)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_policy_json(path, env.scorer, spec, {**info, "episode": None}, budget=budget,
                      method=search.method + ACTOR_SUFFIX, seed=search.seed)
    logger.info("actor at budget %g: accuracy %.2f%% at cost ratio %.3f", budget, info["accuracy"],
                info["cost_ratio"])
    return path
