"""Which policy, which spec and which task a run argument means.

Every command that opens a run (``search --resume``, ``finetune``, ``evaluate``,
``report``, ``export``, ``--budget``) resolves it here: :func:`policy_source` (which policy
JSON and which config.json), :func:`policy_spec` (which task spec) and :func:`task_for`
(the given :class:`~haq_rl.task.Task` under the run's settings, or one loaded from the spec).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from haq_rl.errors import ConfigError, MissingPathError
from haq_rl.models.user import model_from_file
from haq_rl.quant import QuantPolicy
from haq_rl.run.config import read_run_config
from haq_rl.run.layout import BEST_POLICY_FILE, BUDGET_FOLDER_PREFIX, CONFIG_FILE
from haq_rl.task.spec import DEFAULT_ENV_ID, TaskSpec, resolve_spec

if TYPE_CHECKING:
    from haq_rl.task.task import Task

logger = logging.getLogger(__name__)


def task_for(spec: TaskSpec, given: Task | None = None, **settings: Any) -> Task:
    """The task a run works on: ``given`` (a Task built in Python) under ``settings`` (the
    run's budget, hardware, ...), or the task ``spec`` names, loaded."""
    if given is not None:
        return given.with_settings(**settings)
    from haq_rl.task.task import load_task

    return load_task(spec)


def policy_source(path: str | Path, out: str | Path | None = None) -> tuple[Path, Path, Path | None]:
    """``(policy_json, output_dir, run_config_or_None)`` of a run directory or a policy JSON.

    Raises MissingPathError when the path, or a run directory's best_policy.json, is missing.
    """
    path = Path(path).expanduser()
    if path.is_dir():
        policy_path = path / BEST_POLICY_FILE
        if not policy_path.is_file():
            budgets = _searched_budgets(path / CONFIG_FILE)
            if budgets:
                raise ConfigError(f"{path} is a budget-conditioned run (budgets {', '.join(f'{b:g}' for b in budgets)}): "
                                  "pick one with --budget B")
            raise MissingPathError(f"{path} has no {BEST_POLICY_FILE} (is it a finished search run directory?)")
    elif path.is_file():
        policy_path = path
    else:
        raise MissingPathError(f"no run directory or policy JSON at {path}")
    config_path = run_config_for(policy_path)
    out_dir = Path(out).expanduser() if out is not None else policy_path.parent
    return policy_path, out_dir, config_path


def run_config_for(policy_path: Path) -> Path | None:
    """The config.json of the run a policy JSON belongs to: next to it, or, for a budget
    folder of a conditioned run (``budget-<ratio>/``), in the run directory above."""
    folder = Path(policy_path).parent
    for candidate in (folder, *([folder.parent] if folder.name.startswith(BUDGET_FOLDER_PREFIX) else [])):
        if (candidate / CONFIG_FILE).is_file():
            return candidate / CONFIG_FILE
    return None


def _searched_budgets(config_path: Path) -> list[float]:
    if not config_path.is_file():
        return []
    return list(read_run_config(config_path, for_model=False).spec.budgets or [])


def policy_spec(policy: QuantPolicy, env: str | Path | TaskSpec | None = None,
                run_config: Path | None = None, device: str | None = None, *,
                model: str | None = None, weights: str | None = None) -> TaskSpec:
    """The task spec a policy belongs to: ``env`` if given, else the run's config.json, else its env_id.

    Without ``env``, the budget is the one the policy was searched at (its ``budget``
    metadata), so baselines are compared within the policy's own budget, not the env's
    default. ``model`` and ``weights`` (``--model``, ``--weights``) replace the spec's.

    A policy searched on another model than the spec's is refused before any model is
    built: a zoo model it names is taken from it, but an import path never is (a policy
    file must not choose code to run), so the message names ``--model``; likewise a policy
    searched with trained weights needs ``--weights``.
    """
    if env is not None:
        spec = resolve_spec(env)
    elif run_config is not None:
        # The run's own spec, with the search's overrides (budget, hardware, ...).
        spec = read_run_config(run_config).spec
    elif policy.metadata.get("env_id"):
        spec = resolve_spec(str(policy.metadata["env_id"]))
        model_from_file(spec.model, f"the env_id {policy.metadata['env_id']!r} a policy file names")
    else:
        logger.warning("policy names no env_id; using the default env %s", DEFAULT_ENV_ID)
        spec = resolve_spec(DEFAULT_ENV_ID)
    searched_budget = policy.metadata.get("budget")
    if env is None and isinstance(searched_budget, int | float) and (
            float(searched_budget) != spec.budget or spec.budgets):
        # A conditioned run's policy belongs to one of its budgets: a task of that budget alone.
        spec = spec.replace(budgets=(), budget=float(searched_budget))
    if model is not None:
        spec = spec.replace(model=model)
    if weights is not None:
        spec = spec.replace(weights=weights)
    spec = _model_of_policy(policy, spec, chosen=model is not None or env is not None)
    return spec.replace(device=device) if device is not None and device != spec.device else spec


def _model_of_policy(policy: QuantPolicy, spec: TaskSpec, chosen: bool) -> TaskSpec:
    """``spec`` checked against the model and weights the policy says it was searched on;
    ``chosen``: the user named the model (``--model``) or the env (``--env``) on purpose."""
    from haq_rl.models import is_import_path
    from haq_rl.task.label import weights_file_sha256

    searched = policy.metadata.get("model")
    if isinstance(searched, str) and searched and searched != spec.model:
        if not chosen and not is_import_path(searched):
            spec = spec.replace(model=searched)  # a zoo name runs no code of the file's choosing
        else:
            raise ConfigError(
                f"the policy was searched on model {searched!r}, not {spec.model!r}"
                f"{'' if chosen else f' (the model of {spec.id})'}: give --model {searched} "
                "and the --weights it was searched with (haq-rl does not import a model a file names)")
    recorded = policy.metadata.get("weights_sha256")
    if isinstance(recorded, str) and recorded:
        if spec.weights is None:
            raise ConfigError(f"the policy was searched on {spec.model!r} with trained weights "
                              f"(sha256:{recorded[:8]}): give --weights PATH")
        given = weights_file_sha256(spec.weights)
        if given is not None and given != recorded:
            logger.warning("--weights %s (sha256:%s) are not the weights the policy was searched with "
                           "(sha256:%s)", spec.weights, given[:8], recorded[:8])
    return spec
