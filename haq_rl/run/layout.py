"""Every file name of a run directory, in one place.

A search writes ``config.json`` (its settings, the task spec and the layers' shapes),
``episodes.csv`` (one row per evaluated policy), ``best_policy.json`` (the best policy
within budget), and for the RL methods the agent's resume state (``search_state.json``,
``agent.pt``, ``actor.pt``, ``replay_buffer.npz``: state_dicts and arrays, no pickle); ``hawq`` and ``guided`` write ``sensitivity.csv``.
``haq-rl finetune`` adds ``finetuned.pt`` and ``metrics.json``; ``haq-rl report`` adds
``report.md`` and the ``report/`` folder of figures and tables. A budget-conditioned search
writes ``front.csv`` and a ``budget-<ratio>/`` folder per budget instead of
best_policy.json. ``.haq-rl.lock`` marks a run directory a process is writing
(:mod:`haq_rl.run.lock`); its own name, so that another program's ``.lock`` beside it is
never touched.
"""

from __future__ import annotations

from pathlib import Path

from haq_rl.fileio import check_real_folder

CONFIG_FILE = "config.json"
EPISODES_FILE = "episodes.csv"
BEST_POLICY_FILE = "best_policy.json"
STATE_FILE = "search_state.json"
AGENT_FILE = "agent.pt"
ACTOR_FILE = "actor.pt"
REPLAY_FILE = "replay_buffer.npz"
#: What earlier haq-rl versions wrote instead (SB3's zip and pickle): never read, they can run code.
LEGACY_AGENT_FILES = ("agent.zip", "replay_buffer.pkl")
SENSITIVITY_FILE = "sensitivity.csv"
FINETUNED_FILE = "finetuned.pt"
METRICS_FILE = "metrics.json"
REPORT_FILE = "report.md"
REPORT_FOLDER = "report"  # figures and CSV tables, next to report.md
LOCK_FILE = ".haq-rl.lock"
#: A budget-conditioned search (``--budgets``): the best policy per budget, one row each.
FRONT_FILE = "front.csv"
#: ... and each budget's files (best_policy.json, then finetuned.pt, metrics.json, ...) in
#: a folder of its own, ``budget-<ratio>``.
BUDGET_FOLDER_PREFIX = "budget-"


def budget_folder(run_dir: Path, budget: float) -> Path:
    """The folder of one budget of a conditioned run, e.g. ``runs/x/budget-0.5``; a link
    there is refused (UnsafeFileError): search, finetune and export would write through it."""
    folder = Path(run_dir) / f"{BUDGET_FOLDER_PREFIX}{budget:g}"
    check_real_folder(folder)
    return folder


def budget_policy_path(run_dir: Path, budget: float) -> Path:
    """best_policy.json of one budget of a conditioned run."""
    return budget_folder(run_dir, budget) / BEST_POLICY_FILE
