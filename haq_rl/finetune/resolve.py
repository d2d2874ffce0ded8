"""Which policy and which task a ``haq-rl finetune`` / ``evaluate`` argument means."""

from __future__ import annotations

import logging
from pathlib import Path

from haq_rl.errors import ConfigError, MissingPathError
from haq_rl.quant import QuantPolicy
from haq_rl.run.config import read_run_config
from haq_rl.run.layout import BEST_POLICY_FILE, BUDGET_FOLDER_PREFIX, CONFIG_FILE
from haq_rl.task.spec import DEFAULT_ENV_ID, TaskSpec, resolve_spec

logger = logging.getLogger(__name__)

def resolve_policy_source(path: str | Path, out: str | Path | None = None) -> tuple[Path, Path, Path | None]:
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
    return list(read_run_config(config_path).spec.budgets or [])


def resolve_env(policy: QuantPolicy, env: str | Path | TaskSpec | None = None,
                run_config: Path | None = None, device: str | None = None) -> TaskSpec:
    """The env a policy belongs to: ``env`` if given, else the run's config.json, else its env_id.

    Without ``env``, the budget is the one the policy was searched at (its ``budget``
    metadata), so baselines are compared within the policy's own budget, not the env's
    default.
    """
    if env is not None:
        spec = resolve_spec(env)
    elif run_config is not None:
        # The run's own spec, with the search's overrides (budget, hardware, ...).
        spec = read_run_config(run_config).spec
    elif policy.metadata.get("env_id"):
        spec = resolve_spec(str(policy.metadata["env_id"]))
    else:
        logger.warning("policy names no env_id; using the default env %s", DEFAULT_ENV_ID)
        spec = resolve_spec(DEFAULT_ENV_ID)
    searched_budget = policy.metadata.get("budget")
    if env is None and isinstance(searched_budget, int | float) and (
            float(searched_budget) != spec.budget or spec.budgets):
        # A conditioned run's policy belongs to one of its budgets: a task of that budget alone.
        spec = spec.replace(budgets=(), budget=float(searched_budget))
    return spec.replace(device=device) if device is not None and device != spec.device else spec
