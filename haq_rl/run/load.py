"""Finished runs loaded for tables and notebooks: config.json, episodes.csv, best_policy.json, metrics.json.

A :class:`Run` holds what a run directory recorded; :func:`cost_table_for` rebuilds its
per-layer cost table from the layer specs config.json saved (no model is traced).
"""

from __future__ import annotations

import functools
import json
import logging
import math
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from haq_rl.errors import DataFormatError, MissingPathError
from haq_rl.fileio import read_json
from haq_rl.hardware.cost_index import layer_costs
from haq_rl.run.config import read_run_config, read_run_policy
from haq_rl.run.episodes import read_episode_rows
from haq_rl.run.layout import (
    BEST_POLICY_FILE,
    CONFIG_FILE,
    EPISODES_FILE,
    FRONT_FILE,
    METRICS_FILE,
    budget_folder,
)

logger = logging.getLogger(__name__)


@dataclass
class Run:
    """One run directory, loaded.

    Attributes:
        path: the run directory.
        config: config.json as a dict (``search``, ``env``, ``layers``, ``float_accuracy``, ...).
        episodes: episodes.csv as a DataFrame (numeric columns as numbers, ``phase`` as str).
        policy: the best policy (:class:`haq_rl.quant.QuantPolicy`) of best_policy.json.
        metrics: metrics.json of ``haq-rl finetune`` as a dict, or None before fine-tuning.
        label: a short name for legends and tables (the directory name unless given).
        front: a budget-conditioned run's front.csv (best policy per budget), else None;
            ``policy`` and ``metrics`` are then those of its loosest budget.
        budget_metrics: a conditioned run's metrics.json per fine-tuned budget.
    """

    path: Path
    config: dict[str, Any]
    episodes: pd.DataFrame
    policy: Any  # haq_rl.quant.QuantPolicy (imported lazily: torch)
    metrics: dict[str, Any] | None
    label: str = ""
    front: pd.DataFrame | None = None
    budget_metrics: dict[float, dict[str, Any]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.label:
            self.label = self.path.name

    @property
    def spec_fields(self) -> dict[str, Any]:
        """The task spec's fields as config.json saved them (its ``env`` section)."""
        return dict(self.config.get("env", {}))

    @property
    def search(self) -> dict[str, Any]:
        """The search settings saved in config.json."""
        return dict(self.config.get("search", {}))

    @property
    def layers(self) -> list[str]:
        return list(self.config.get("layers") or self.policy.layer_names)

    @property
    def objective(self) -> str:
        return str(self.spec_fields.get("objective", "latency"))

    @property
    def budget(self) -> float:
        return float(self.spec_fields.get("budget", 1.0))

    @property
    def method(self) -> str:
        return str(self.search.get("method", "?"))

    @property
    def float_accuracy(self) -> float:
        value = self.config.get("float_accuracy")
        return float(value) if value is not None else math.nan


def load_run(run_dir: str | os.PathLike[str], label: str | None = None) -> Run:
    """Load config.json, episodes.csv, best_policy.json and (if present) metrics.json.

    Raises:
        MissingPathError: ``run_dir`` is not a directory, or one of the required files is
            missing (the message names the file).
        DataFormatError: a file exists but cannot be parsed.
    """

    path = Path(run_dir)
    if not path.exists():
        raise MissingPathError(f"run directory not found: {path}")
    if not path.is_dir():
        raise MissingPathError(f"not a run directory (not a folder): {path}")
    for name in (CONFIG_FILE, EPISODES_FILE):
        if not (path / name).is_file():
            raise MissingPathError(f"{path / name} not found (is {path} a finished haq-rl search run?)")
    # The one typed reader: a bad file is one line. A report builds no model.
    run_config = read_run_config(path, for_model=False)
    config = run_config.data
    budgets = [float(b) for b in run_config.spec.budgets or ()]
    # A conditioned run is described by its loosest budget's files, plus its front.
    folder = budget_folder(path, budgets[-1]) if budgets else path
    if not (folder / BEST_POLICY_FILE).is_file():
        raise MissingPathError(f"{folder / BEST_POLICY_FILE} not found (is {path} a finished haq-rl search run?)")
    policy = read_run_policy(folder / BEST_POLICY_FILE, run_config)
    metrics = read_json(folder / METRICS_FILE) if (folder / METRICS_FILE).is_file() else None
    front = _read_front(path / FRONT_FILE) if budgets and (path / FRONT_FILE).is_file() else None
    budget_metrics = {b: read_json(budget_folder(path, b) / METRICS_FILE) for b in budgets
                      if (budget_folder(path, b) / METRICS_FILE).is_file()}
    return Run(path=path, config=config, episodes=_read_episodes(path / EPISODES_FILE), policy=policy,
               metrics=metrics, label=label or "", front=front, budget_metrics=budget_metrics)


def _read_episodes(path: Path) -> pd.DataFrame:
    rows = read_episode_rows(path)  # checked; drops a partial last line of a killed search
    if not rows:
        raise DataFormatError(f"{path} holds no episode rows (a run with a best policy has at least one)")
    frame = pd.DataFrame(rows)
    missing = [c for c in ("episode", "reward", "accuracy", "cost_ratio") if c not in frame.columns]
    if missing:
        raise DataFormatError(f"{path} lacks the column(s) {', '.join(missing)}")
    for column in frame.columns:
        if column != "phase":
            frame[column] = pd.to_numeric(frame[column].replace("", np.nan), errors="coerce")
    for column in frame.columns:
        if column.startswith(("w:", "a:")) or column in ("episode", "bits_lowered"):
            if frame[column].notna().all():
                frame[column] = frame[column].astype(np.int64)
    return frame


#: What the report reads of front.csv, one whole row per budget.
_FRONT_COLUMNS = ("budget", "episode", "accuracy", "cost_ratio", "mean_w_bits", "mean_a_bits")


def _read_front(path: Path) -> pd.DataFrame:
    """front.csv, checked: a file that is not a table of the front's numbers is one line."""
    try:
        frame = pd.read_csv(path)
        values = frame[list(_FRONT_COLUMNS)].apply(pd.to_numeric)
        whole = not frame.empty and not values.drop(columns="accuracy").isna().any().any()  # accuracy may be null
    except (UnicodeDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError, KeyError, ValueError, TypeError):
        whole = False
    if not whole:
        raise DataFormatError(f"{path} is not a front.csv haq-rl wrote (one whole row per budget with "
                              f"{', '.join(_FRONT_COLUMNS)})")
    return frame


def as_run(run_or_dir: Run | str | os.PathLike[str]) -> Run:
    return run_or_dir if isinstance(run_or_dir, Run) else load_run(run_or_dir)


def as_runs(runs: Run | str | os.PathLike[str] | Iterable[Run | str | os.PathLike[str]]) -> list[Run]:
    if isinstance(runs, (Run, str, os.PathLike)):
        return [as_run(runs)]
    loaded = [as_run(r) for r in runs]
    if not loaded:
        raise ValueError("no run given")
    return loaded


def cost_table_for(run: Run) -> Any:
    """The :class:`haq_rl.hardware.CostTable` of a run: the layer specs config.json recorded
    at search time, costed on the run's hardware profile (no model is built or traced).
    Cached per (layer specs, hardware, weight method) within the process: a report asks
    for it once per table and figure.

    Raises DataFormatError for a config.json without layer specs.
    """
    rows = run.config.get("layer_specs")
    if not isinstance(rows, list) or not rows:
        raise DataFormatError(f"{run.path / CONFIG_FILE} has no 'layer_specs' (written by an older haq-rl); "
                              "rerun the search to report it")
    from haq_rl.hardware import LayerSpec

    try:
        for row in rows:
            LayerSpec(**row)
    except (TypeError, ValueError) as error:
        raise DataFormatError(f"{run.path / CONFIG_FILE}: bad layer_specs entry: {error}") from None
    env = run.spec_fields
    key = json.dumps({"layers": rows, "hardware": env.get("hardware"), "weight_method": env.get("weight_method")},
                     sort_keys=True)
    return _cost_table_cached(key)


@functools.lru_cache(maxsize=16)
def _cost_table_cached(key: str) -> Any:
    from haq_rl.hardware import CostTable, LayerSpec
    from haq_rl.hardware.profile import profile_for_layers

    data = json.loads(key)
    recorded = [LayerSpec(**row) for row in data["layers"]]
    # A measured target (ort-cpu) reuses this machine's cached table of the same layers.
    profile, layers = profile_for_layers(str(data["hardware"]), lambda batch: recorded, "run")
    return CostTable.build(layers, profile, kmeans_codebooks=data["weight_method"] == "kmeans")


def table_of(run: Run) -> Any:
    """The run's cost table, checked against the layers its episodes name."""
    table = cost_table_for(run)
    if table.layer_names != run.layers:
        raise DataFormatError(
            f"{run.path}: config.json's layer_specs ({len(table.layer_names)}) and layers "
            f"({len(run.layers)}) disagree")
    return table


def lookup(array: np.ndarray, w: np.ndarray, a: np.ndarray) -> np.ndarray:
    return np.asarray(layer_costs(array, w, a), dtype=np.float64)


