"""Tables (pandas) and figures (matplotlib) of search runs, and the ``haq-rl report`` writer.

A run directory (written by :mod:`haq_rl.search`, see :mod:`haq_rl.run_dir`) loads into
a :class:`Run`; every function here accepts a :class:`Run` or a run directory path, so a
notebook can do::

    from haq_rl import report
    run = report.load_run("runs/MobileNetV2Edge-v0-ddpg-s0")
    report.policy_table(run)            # per-layer bits and costs
    report.plot_curve(run)              # a matplotlib Figure

Per-layer costs are not stored in a run directory; they are recomputed from the env spec
saved in config.json (model architecture + hardware profile -> :class:`CostTable`). That
needs no pretrained weights, only one traced forward pass of a freshly built model.

Figures use matplotlib's Agg backend through the object-oriented API (``Figure``, never
``pyplot``), so nothing opens a window and nothing leaks into pyplot's global state.
"""

from __future__ import annotations

import datetime as _dt
import functools
import json
import logging
import math
import os
import shutil
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from haq_rl.errors import DataFormatError, MissingPathError
from haq_rl.run_dir import (
    BASE_COLUMNS,
    BEST_POLICY_FILE,
    CONFIG_FILE,
    EPISODES_FILE,
    read_episode_rows,
)
from haq_rl.task.budget import BUDGET_TOLERANCE, is_within_budget, pinned_layers, uniform_bits

logger = logging.getLogger(__name__)

METRICS_FILE = "metrics.json"
REPORT_FILE = "report.md"
REPORT_FOLDER = "report"  # figures and CSV tables, next to report.md

#: episodes.csv / CostTable column of each objective.
OBJECTIVE_COLUMNS = {"latency": "latency_ms", "energy": "energy_uj", "size": "size_bytes", "bops": "bops"}
COST_COLUMNS = ("latency_ms", "energy_uj", "size_bytes", "bops")
COST_LABELS = {"latency_ms": "latency (ms)", "energy_uj": "energy (uJ)", "size_bytes": "weight size (bytes)",
               "bops": "BOPs"}
#: Bits of the reference policy that every ratio is taken to (HAQ's "uniform 8/8").
REFERENCE_BITS = 8

KIND_COLORS = {"conv": "#1f77b4", "depthwise": "#ff7f0e", "grouped": "#9467bd", "linear": "#2ca02c"}
KIND_HATCHES = {"conv": "", "depthwise": "///", "grouped": "xxx", "linear": "..."}
PHASE_COLORS = {"warm-up": "#ffd92f", "explore": "#8da0cb", "final": "#66c2a5", "random": "#b3b3b3",
                "uniform": "#fc8d62", "greedy": "#a6d854"}
COMPARISON_COLUMNS = ("name", "w_bits", "a_bits", "accuracy_before", "accuracy", "latency_ms", "energy_uj",
                      "size_bytes", "bops", "cost_ratio", "within_budget", "latency_ratio", "energy_ratio",
                      "size_ratio")


# --------------------------------------------------------------------------- loading
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
    """

    path: Path
    config: dict[str, Any]
    episodes: pd.DataFrame
    policy: Any  # haq_rl.quant.QuantPolicy (imported lazily: torch)
    metrics: dict[str, Any] | None
    label: str = ""

    def __post_init__(self) -> None:
        if not self.label:
            self.label = self.path.name

    @property
    def env(self) -> dict[str, Any]:
        """The env spec fields saved in config.json."""
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
        return str(self.env.get("objective", "latency"))

    @property
    def budget(self) -> float:
        return float(self.env.get("budget", 1.0))

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
    from haq_rl.quant import QuantPolicy

    path = Path(run_dir)
    if not path.exists():
        raise MissingPathError(f"run directory not found: {path}")
    if not path.is_dir():
        raise MissingPathError(f"not a run directory (not a folder): {path}")
    for name in (CONFIG_FILE, BEST_POLICY_FILE, EPISODES_FILE):
        if not (path / name).is_file():
            raise MissingPathError(f"{path / name} not found (is {path} a finished haq-rl search run?)")
    config = _read_json(path / CONFIG_FILE)
    if not isinstance(config, dict) or "env" not in config:
        raise DataFormatError(f"{path / CONFIG_FILE} has no 'env' section; not a haq-rl run config")
    try:
        policy = QuantPolicy.from_json(path / BEST_POLICY_FILE)
    except (KeyError, TypeError, json.JSONDecodeError) as error:
        raise DataFormatError(f"{path / BEST_POLICY_FILE} is not a policy file: {error}") from None
    metrics = _read_json(path / METRICS_FILE) if (path / METRICS_FILE).is_file() else None
    return Run(path=path, config=config, episodes=_read_episodes(path / EPISODES_FILE), policy=policy,
               metrics=metrics, label=label or "")


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise DataFormatError(f"{path} is not valid JSON: {error}") from None


def _read_episodes(path: Path) -> pd.DataFrame:
    rows = read_episode_rows(path)  # drops a partial last line of a killed search
    frame = pd.DataFrame(rows)
    if frame.empty:
        header = path.read_text().split("\n", 1)[0]
        return pd.DataFrame(columns=[c for c in header.split(",") if c] or list(BASE_COLUMNS))
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


def _as_run(run_or_dir: Run | str | os.PathLike[str]) -> Run:
    return run_or_dir if isinstance(run_or_dir, Run) else load_run(run_or_dir)


def _as_runs(runs: Run | str | os.PathLike[str] | Iterable[Run | str | os.PathLike[str]]) -> list[Run]:
    if isinstance(runs, (Run, str, os.PathLike)):
        return [_as_run(runs)]
    loaded = [_as_run(r) for r in runs]
    if not loaded:
        raise ValueError("no run given")
    return loaded


# --------------------------------------------------------------------------- cost table
def cost_table_for(env: dict[str, Any]) -> Any:
    """The :class:`haq_rl.hardware.CostTable` of a run's env spec (config.json ``env``).

    Builds the model architecture (random weights: only shapes matter), traces its layer
    specs and evaluates the hardware profile. Cached per spec within the process.
    """
    return _cost_table_cached(json.dumps(env, sort_keys=True, default=str))


#: (channels, classes) of the built-in datasets; others (imagefolder) are loaded to find out.
_DATASET_SHAPES = {"mnist5k": (1, 10), "mnist": (1, 10), "digits": (1, 10), "cifar10": (3, 10)}


@functools.lru_cache(maxsize=16)
def _cost_table_cached(env_json: str) -> Any:
    from haq_rl.data import load_dataset
    from haq_rl.env import EnvSpec
    from haq_rl.hardware import CostTable, load_profile
    from haq_rl.models import build_model, extract_layer_specs

    spec = EnvSpec.from_dict(json.loads(env_json))
    profile = load_profile(spec.hardware)
    # Only the class count and the channel count of the data are needed: the search
    # resizes images to spec.input_size, so the traced shape is (C, input_size, input_size).
    # Built-in datasets have known shapes (loading mnist5k alone takes seconds).
    if spec.dataset in _DATASET_SHAPES:
        in_channels, num_classes = _DATASET_SHAPES[spec.dataset]
    else:
        data = load_dataset(spec.dataset, spec.data_root)
        in_channels, num_classes = int(data.images.shape[1]), int(data.num_classes)
    model = build_model(spec.model, num_classes=num_classes, in_channels=in_channels,
                        input_size=spec.input_size, width_mult=spec.width_mult)
    specs = extract_layer_specs(model, (in_channels, spec.input_size, spec.input_size), batch=profile.batch)
    return CostTable.build(specs, profile, kmeans_codebooks=spec.weight_method == "kmeans")


def _table_of(run: Run) -> Any:
    table = cost_table_for(run.env)
    if table.layer_names != run.layers:
        raise DataFormatError(
            f"{run.path}: the layers of {run.env.get('model')!r} ({len(table.layer_names)}) do not match "
            f"config.json's ({len(run.layers)}); was the model changed after the search?")
    return table


def _lookup(array: np.ndarray, w: np.ndarray, a: np.ndarray) -> np.ndarray:
    index = np.arange(array.shape[0])
    return np.asarray(array[index, np.asarray(w) - 1, np.asarray(a) - 1], dtype=np.float64)


# --------------------------------------------------------------------------- tables
def episodes(run_or_dir: Run | str | os.PathLike[str]) -> pd.DataFrame:
    """episodes.csv plus the running best.

    Added columns: ``within_budget`` (cost ratio <= budget), ``best_reward`` (best reward
    so far among policies within budget, NaN before the first), ``best_accuracy`` and
    ``best_cost_ratio`` (of that running-best policy), ``mean_w_bits``, ``mean_a_bits``.
    """
    run = _as_run(run_or_dir)
    frame = run.episodes.copy()
    if frame.empty:
        for column in ("within_budget", "best_reward", "best_accuracy", "best_cost_ratio"):
            frame[column] = pd.Series(dtype=float)
        return frame
    frame["within_budget"] = frame["cost_ratio"] <= run.budget + BUDGET_TOLERANCE
    best_reward, best_acc, best_cost = [], [], []
    current: tuple[float, float, float] | None = None
    # Same rule as the search's recorder: strictly better reward, within budget.
    for reward, acc, cost, within in zip(frame["reward"], frame["accuracy"], frame["cost_ratio"],
                                         frame["within_budget"], strict=True):
        if within and (current is None or reward > current[0]):
            current = (float(reward), float(acc), float(cost))
        best_reward.append(current[0] if current else math.nan)
        best_acc.append(current[1] if current else math.nan)
        best_cost.append(current[2] if current else math.nan)
    frame["best_reward"] = best_reward
    frame["best_accuracy"] = best_acc
    frame["best_cost_ratio"] = best_cost
    w_cols = [f"w:{n}" for n in run.layers if f"w:{n}" in frame.columns]
    a_cols = [f"a:{n}" for n in run.layers if f"a:{n}" in frame.columns]
    if w_cols:
        frame["mean_w_bits"] = frame[w_cols].mean(axis=1)
        frame["mean_a_bits"] = frame[a_cols].mean(axis=1)
    return frame


def policy_table(run_or_dir: Run | str | os.PathLike[str], policy: Any | None = None) -> pd.DataFrame:
    """One row per layer: bits and costs of the best policy (or ``policy``) and of 8/8.

    Columns: ``layer``, ``kind``, ``w_bits``, ``a_bits``, ``macs``, ``params``, then for each
    cost in latency_ms, energy_uj, size_bytes, bops: the value at the policy, at 8/8
    (``<cost>_8bit``) and the layer's share of the model total at each (``<cost>_share``,
    ``<cost>_share_8bit``, fractions summing to 1; NaN where the profile has no such cost),
    and ``share`` / ``share_8bit``: the same for the run's objective.
    """
    run = _as_run(run_or_dir)
    policy = run.policy if policy is None else policy
    table = _table_of(run)
    index = {name: i for i, name in enumerate(policy.layer_names)}
    missing = [n for n in run.layers if n not in index]
    if missing:
        raise DataFormatError(f"{run.path / BEST_POLICY_FILE} has no bits for layer(s) {', '.join(missing)}")
    order = [index[n] for n in run.layers]
    w = np.asarray(policy.w_bits)[order].astype(np.int64)
    a = np.asarray(policy.a_bits)[order].astype(np.int64)
    ref = np.full(len(w), REFERENCE_BITS)
    frame = pd.DataFrame({
        "layer": run.layers, "kind": table.kinds, "w_bits": w, "a_bits": a,
        "macs": [s.macs for s in table.specs], "params": [s.weight_count for s in table.specs],
    })
    for column in COST_COLUMNS:
        array = getattr(table, column)
        at_policy, at_ref = _lookup(array, w, a), _lookup(array, ref, ref)
        frame[column] = at_policy
        frame[f"{column}_8bit"] = at_ref
        frame[f"{column}_share"] = _share(at_policy)
        frame[f"{column}_share_8bit"] = _share(at_ref)
    objective = OBJECTIVE_COLUMNS[run.objective]
    frame["share"] = frame[f"{objective}_share"]
    frame["share_8bit"] = frame[f"{objective}_share_8bit"]
    return frame


def _share(values: np.ndarray) -> np.ndarray:
    total = np.nansum(values)
    if not np.isfinite(values).any() or total <= 0:
        return np.full(values.shape, np.nan)
    return values / total


def uniform_baselines(run_or_dir: Run | str | os.PathLike[str]) -> pd.DataFrame:
    """Uniform B/B policies for B = max_bits .. min_bits: cost from the table, accuracy if evaluated.

    Layers the env pins (first/last with ``pin_first_last``) stay at 8 bits and weight-only
    objectives keep activations at 8, exactly as the search's uniform baseline builds them.
    ``accuracy`` is that of a matching row of episodes.csv (the reward split), else NaN.
    Columns: ``bits``, ``name``, ``cost``, ``cost_ratio``, ``within_budget``, ``accuracy``, ``episode``.
    """
    run = _as_run(run_or_dir)
    table = _table_of(run)
    env = run.env
    n = len(run.layers)
    pinned = pinned_layers(n, bool(env.get("pin_first_last", True)))
    weight_only = run.objective == "size"
    cost_array = np.asarray(table.objective(run.objective), dtype=np.float64)
    ref = np.full(n, REFERENCE_BITS)
    reference = float(_lookup(cost_array, ref, ref).sum())
    w_cols = [f"w:{name}" for name in run.layers]
    a_cols = [f"a:{name}" for name in run.layers]
    have_bits = not run.episodes.empty and all(c in run.episodes.columns for c in w_cols + a_cols)
    rows = []
    for bits in range(int(env.get("max_bits", 8)), int(env.get("min_bits", 2)) - 1, -1):
        w, a = uniform_bits(pinned, weight_only, bits)
        cost = float(_lookup(cost_array, w, a).sum())
        accuracy, episode = math.nan, None
        if have_bits:
            match = ((run.episodes[w_cols].to_numpy() == w).all(axis=1)
                     & (run.episodes[a_cols].to_numpy() == a).all(axis=1))
            if match.any():
                first = run.episodes[match].iloc[0]
                accuracy, episode = float(first["accuracy"]), int(first["episode"])
        rows.append({"bits": bits, "name": f"uniform {bits}/{bits}", "cost": cost,
                     "cost_ratio": cost / reference if reference > 0 else math.nan,
                     "within_budget": is_within_budget(cost / reference, run.budget) if reference > 0 else False,
                     "accuracy": accuracy, "episode": episode})
    return pd.DataFrame(rows)


def pareto_front(df: pd.DataFrame, cost_col: str = "cost_ratio", acc_col: str = "accuracy") -> pd.DataFrame:
    """Rows of ``df`` not dominated by another row (lower or equal cost and higher accuracy).

    Sorted by cost ascending (accuracy then rises strictly); rows with NaN cost or accuracy
    are ignored; of exact duplicates the first is kept.
    """
    valid = df.dropna(subset=[cost_col, acc_col])
    ordered = valid.sort_values([cost_col, acc_col], ascending=[True, False], kind="stable")
    keep, best = [], -math.inf
    for label, acc in zip(ordered.index, ordered[acc_col], strict=True):
        if acc > best:
            keep.append(label)
            best = acc
    return ordered.loc[keep]


def comparison_table(run_or_dir: Run | str | os.PathLike[str]) -> pd.DataFrame | None:
    """The rows of metrics.json (float, uniform 8/8, uniform 4/4 or largest within budget,
    searched) as a DataFrame, or None when the run has not been fine-tuned yet.

    ``w_bits``/``a_bits`` of mixed policies (lists) are kept as lists; ``mean_w_bits`` and
    ``mean_a_bits`` summarise them as numbers.
    """
    run = _as_run(run_or_dir)
    if not run.metrics:
        return None
    rows = run.metrics.get("rows")
    if not isinstance(rows, list) or not rows:
        raise DataFormatError(f"{run.path / METRICS_FILE} has no 'rows' list")
    frame = pd.DataFrame(rows)
    columns = [c for c in COMPARISON_COLUMNS if c in frame.columns]
    frame = frame[columns + [c for c in frame.columns if c not in columns]]
    for part in ("w", "a"):
        if f"{part}_bits" in frame.columns:
            frame[f"mean_{part}_bits"] = [_mean_bits(v) for v in frame[f"{part}_bits"]]
    return frame


def _mean_bits(value: Any) -> float:
    if value is None:
        return math.nan
    if isinstance(value, dict):
        value = list(value.values())
    if isinstance(value, (list, tuple, np.ndarray)):
        return float(np.mean(value)) if len(value) else math.nan
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def best_table(runs: Run | str | os.PathLike[str] | Iterable[Run | str | os.PathLike[str]]) -> pd.DataFrame:
    """One row per run: its settings and its best policy (and fine-tuned accuracy if any)."""
    rows = []
    for run in _as_runs(runs):
        meta = run.policy.metadata if hasattr(run.policy, "metadata") else {}
        metrics = dict(meta.get("metrics") or {})
        searched = None
        table = comparison_table(run)
        if table is not None and "name" in table.columns:
            match = table[table["name"] == "searched"]
            searched = match.iloc[0] if len(match) else None
        rows.append({
            "run": run.label, "env": run.env.get("id"), "model": run.env.get("model"),
            "hardware": run.env.get("hardware"), "objective": run.objective, "budget": run.budget,
            "method": run.method, "episodes": len(run.episodes), "float_accuracy": run.float_accuracy,
            "best_episode": meta.get("episode"),
            **{k: metrics.get(k, math.nan) for k in ("reward", "accuracy", "cost_ratio", *COST_COLUMNS)},
            "mean_w_bits": float(np.mean(run.policy.w_bits)), "mean_a_bits": float(np.mean(run.policy.a_bits)),
            "finetuned_accuracy": float(searched["accuracy"]) if searched is not None else math.nan,
        })
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------- figures
def _new_figure(width: float, height: float) -> Figure:
    figure = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(figure)  # Agg canvas: savefig and artist extents work without pyplot
    return figure


def _layer_width(layers: int) -> float:
    return float(min(22.0, max(8.0, 0.28 * layers + 3)))


def _label_height(names: Sequence[str]) -> float:
    """Inches that vertical layer-name tick labels need below an axis."""
    return 0.3 + 0.062 * max((len(n) for n in names), default=0)


def _set_layer_ticks(ax: Any, names: Sequence[str]) -> None:
    """Rotate layer names; thin them when the axis is too narrow for one label per bar."""
    width_in = ax.figure.get_figwidth() * 0.85
    fit = max(10, int(width_in / 0.13))  # a 7-pt rotated label needs about 0.13 inch
    step = max(1, math.ceil(len(names) / fit))
    positions = np.arange(len(names))[::step]
    ax.set_xticks(positions)
    ax.set_xticklabels([names[i] for i in positions], rotation=90, fontsize=7 if len(names) > 20 else 8)
    ax.set_xlim(-0.6, len(names) - 0.4)


def _run_colors(count: int) -> list[str]:
    return [f"C{i % 10}" for i in range(count)]


def plot_bits(runs: Run | str | os.PathLike[str] | Iterable[Run | str | os.PathLike[str]]) -> Figure:
    """Bar charts of weight bits (top) and activation bits (bottom) per layer.

    One run: bar colour = layer kind (conv, depthwise, grouped, linear). Several runs with
    the same layers: grouped bars, colour = run, hatch = layer kind. Runs with different
    layers get one pair of panels each. Every bar series is a BarContainer labelled with
    the run's label (``ax.containers``), in the order of the runs.
    """
    runs = _as_runs(runs)
    same_layers = all(r.layers == runs[0].layers for r in runs)
    groups = [runs] if same_layers else [[r] for r in runs]
    width = _layer_width(max(len(r.layers) for r in runs) * (len(runs) if same_layers else 1) ** 0.5)
    panel = 1.9 + _label_height([n for r in runs for n in r.layers])
    figure = _new_figure(width, 2 * panel * len(groups) + 0.3)
    axes = figure.subplots(2 * len(groups), 1, squeeze=False)[:, 0]
    for g, group in enumerate(groups):
        layers = group[0].layers
        kinds = _table_of(group[0]).kinds
        x = np.arange(len(layers))
        bar_width = 0.8 / len(group)
        colors = _run_colors(len(runs)) if len(group) > 1 else None
        for p, (part, title) in enumerate((("w", "Weight bits"), ("a", "Activation bits"))):
            ax = axes[2 * g + p]
            for i, run in enumerate(group):
                bits = np.asarray(getattr(run.policy, f"{part}_bits"))[
                    [run.policy.layer_names.index(n) for n in layers]]
                offset = (i - (len(group) - 1) / 2) * bar_width
                face: str | list[str]
                if colors is None:
                    face = [KIND_COLORS.get(k, "grey") for k in kinds]
                    hatch = None
                else:
                    face = colors[runs.index(run)]
                    hatch = [KIND_HATCHES.get(k, "") for k in kinds]
                container = ax.bar(x + offset, bits, width=bar_width, color=face, edgecolor="black",
                                   linewidth=0.4, hatch=hatch, label=run.label)
                if colors is None and len(layers) <= 40:  # numbers on bars only while they fit
                    ax.bar_label(container, fontsize=6, padding=1)
            ax.set_ylim(0, max(8, int(group[0].env.get("max_bits", 8))) + 1)
            ax.set_yticks(range(0, 9, 2))
            ax.set_ylabel("bits")
            ax.set_title(f"{title} per layer" + (f" - {group[0].label}" if len(group) == 1 else ""))
            ax.grid(axis="y", alpha=0.3)
            _set_layer_ticks(ax, layers)
            present = [k for k in KIND_COLORS if k in kinds]
            if colors is None:
                handles = [Patch(facecolor=KIND_COLORS[k], edgecolor="black", label=k) for k in present]
            else:
                handles = [Patch(facecolor=colors[runs.index(r)], edgecolor="black", label=r.label) for r in group]
                handles += [Patch(facecolor="white", edgecolor="black", hatch=KIND_HATCHES[k], label=k)
                            for k in present]
            ax.legend(handles=handles, fontsize=7, loc="upper left", bbox_to_anchor=(1.005, 1.0))
    return figure


def _cost_metrics(table: pd.DataFrame, objective: str) -> list[str]:
    """Latency and energy when the profile models them, else the objective's own cost."""
    metrics = [c for c in ("latency_ms", "energy_uj") if table[c].notna().any()]
    return metrics or [OBJECTIVE_COLUMNS[objective]]


def plot_cost_share(runs: Run | str | os.PathLike[str] | Iterable[Run | str | os.PathLike[str]]) -> Figure:
    """Each layer's share (%) of the model's latency / energy at the searched policy and at 8/8.

    One row of panels per run, one panel per cost (latency and energy where the hardware
    profile has them, else the objective's cost such as size or BOPs). Bar containers are
    labelled ``"searched"`` and ``"8/8"``; heights are ``100 * policy_table <cost>_share``.
    """
    runs = _as_runs(runs)
    tables = [policy_table(r) for r in runs]
    panels = [(run, table, metric) for run, table in zip(runs, tables, strict=True)
              for metric in _cost_metrics(table, run.objective)]
    # One panel per row: long layer lists need the full width, side by side they'd be unreadable.
    panel = 2.3 + _label_height([n for r in runs for n in r.layers])
    figure = _new_figure(_layer_width(max(len(r.layers) for r in runs)), panel * len(panels) + 0.3)
    axes = figure.subplots(len(panels), 1, squeeze=False)[:, 0]
    for ax, (run, table, metric) in zip(axes, panels, strict=True):
        x = np.arange(len(table))
        total, total_ref = table[metric].sum(), table[f"{metric}_8bit"].sum()
        ax.bar(x - 0.2, 100 * table[f"{metric}_share"], width=0.4, color="C0", label="searched")
        ax.bar(x + 0.2, 100 * table[f"{metric}_share_8bit"], width=0.4, color="C7", label="8/8")
        name, _, unit = COST_LABELS[metric].partition(" (")
        unit = unit.rstrip(")")
        ratio = f" ({total / total_ref:.1%})" if total_ref else ""
        ax.set_title(f"{run.label}: share of {name} per layer - total {_fmt_num(total)} {unit} searched "
                     f"vs {_fmt_num(total_ref)} {unit} at 8/8{ratio}", fontsize=10)
        ax.set_ylabel(f"% of model {name}")
        ax.grid(axis="y", alpha=0.3)
        _set_layer_ticks(ax, list(table["layer"]))
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.005, 1.0))
    return figure


def _fmt_num(value: float) -> str:
    if not math.isfinite(value):
        return "-"
    magnitude = abs(value)
    if magnitude >= 1e9:
        return f"{value / 1e9:.3g}G"
    if magnitude >= 1e6:
        return f"{value / 1e6:.3g}M"
    if magnitude >= 1e4:
        return f"{value / 1e3:.3g}k"
    return f"{value:.4g}"


def _phase_spans(frame: pd.DataFrame) -> list[tuple[str, float, float]]:
    """Contiguous runs of the same phase as (phase, first episode - 0.5, last episode + 0.5)."""
    spans: list[tuple[str, float, float]] = []
    for phase, episode in zip(frame["phase"].astype(str), frame["episode"], strict=True):
        if spans and spans[-1][0] == phase:
            spans[-1] = (phase, spans[-1][1], episode + 0.5)
        else:
            spans.append((phase, episode - 0.5, episode + 0.5))
    return spans


def plot_curve(runs: Run | str | os.PathLike[str] | Iterable[Run | str | os.PathLike[str]]) -> Figure:
    """Reward (top) and accuracy (bottom) of every episode with the running best, phases shaded.

    Lines carry labels ``"<run> reward"``, ``"<run> best reward"``, ``"<run> accuracy"`` and
    ``"<run> accuracy of best"``; their y-data are the columns ``reward``, ``best_reward``,
    ``accuracy`` and ``best_accuracy`` of :func:`episodes`. Phases (warm-up / explore /
    final, or the baseline's name) are shaded when a single run is plotted.
    """
    runs = _as_runs(runs)
    figure = _new_figure(10, 7)
    ax_reward, ax_acc = figure.subplots(2, 1, sharex=True)
    colors = _run_colors(len(runs))
    for run, color in zip(runs, colors, strict=True):
        frame = episodes(run)
        if frame.empty:
            continue
        x = frame["episode"].to_numpy()
        marker = "o" if len(frame) <= 200 else None
        ax_reward.plot(x, frame["reward"], color=color, alpha=0.45, lw=0.8, marker=marker, ms=3,
                       label=f"{run.label} reward")
        ax_reward.plot(x, frame["best_reward"], color=color, lw=2, drawstyle="steps-post",
                       label=f"{run.label} best reward")
        ax_acc.plot(x, frame["accuracy"], color=color, alpha=0.45, lw=0.8, marker=marker, ms=3,
                    label=f"{run.label} accuracy")
        ax_acc.plot(x, frame["best_accuracy"], color=color, lw=2, drawstyle="steps-post",
                    label=f"{run.label} accuracy of best")
    floats = {r.float_accuracy for r in runs if math.isfinite(r.float_accuracy)}
    for value in sorted(floats):
        ax_acc.axhline(value, color="black", ls="--", lw=0.8, label=f"float accuracy {value:.2f}%")
    if len(runs) == 1 and not runs[0].episodes.empty:
        seen: set[str] = set()
        for phase, start, end in _phase_spans(runs[0].episodes):
            for ax in (ax_reward, ax_acc):
                ax.axvspan(start, end, color=PHASE_COLORS.get(phase, "#dddddd"), alpha=0.18, lw=0,
                           label=f"phase: {phase}" if ax is ax_reward and phase not in seen else None)
            seen.add(phase)
    title = runs[0].label if len(runs) == 1 else " vs ".join(r.label for r in runs)
    ax_reward.set_title(f"Search progress: {title}")
    ax_reward.set_ylabel("reward")
    ax_acc.set_ylabel("accuracy on reward split (%)")
    ax_acc.set_xlabel("episode (evaluated policy)")
    for ax in (ax_reward, ax_acc):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.005, 1.0))
    return figure


def plot_pareto(runs: Run | str | os.PathLike[str] | Iterable[Run | str | os.PathLike[str]]) -> Figure:
    """Accuracy vs cost ratio of every evaluated policy, the Pareto front and uniform baselines.

    Per run: a scatter of all episodes (``"<run> evaluated"``), the front as a step line
    (``"<run> Pareto front"``, data = :func:`pareto_front` of :func:`episodes`), the best
    policy as a star and the budget as a dashed vertical line. Uniform B/B policies sit
    at their table cost: a labelled square where episodes.csv holds their accuracy, else a
    dotted vertical line (cost only).
    """
    runs = _as_runs(runs)
    figure = _new_figure(9, 6)
    ax = figure.subplots()
    colors = _run_colors(len(runs))
    budgets: set[float] = set()
    for run, color in zip(runs, colors, strict=True):
        frame = episodes(run)
        if not frame.empty:
            ax.scatter(frame["cost_ratio"], frame["accuracy"], s=14, color=color, alpha=0.35,
                       label=f"{run.label} evaluated")
            front = pareto_front(frame, "cost_ratio", "accuracy")
            ax.plot(front["cost_ratio"], front["accuracy"], color=color, lw=1.8, marker="o", ms=4,
                    drawstyle="steps-post", label=f"{run.label} Pareto front")
        metrics = dict(run.policy.metadata.get("metrics") or {})
        if "cost_ratio" in metrics and "accuracy" in metrics:
            ax.scatter([metrics["cost_ratio"]], [metrics["accuracy"]], marker="*", s=180, color=color,
                       edgecolor="black", zorder=5, label=f"{run.label} best policy")
        if run.budget not in budgets:
            ax.axvline(run.budget, color=color, ls="--", lw=1, label=f"budget {run.budget:g}")
            budgets.add(run.budget)
    # Runs of the same task share their uniform points: one run's episodes may hold the
    # accuracy another lacks (e.g. a `--method uniform` run next to a DDPG run).
    tasks: dict[str, list[int]] = {}
    for i, run in enumerate(runs):
        tasks.setdefault(_task_key(run), []).append(i)
    for members in tasks.values():
        uniform = _merged_uniform([runs[i] for i in members])
        suffix = "" if len(tasks) == 1 else f" ({', '.join(runs[i].label for i in members)})"
        _draw_uniform(ax, uniform, suffix=suffix, color="black" if len(tasks) == 1 else colors[members[0]])
    objectives = sorted({r.objective for r in runs})
    ax.set_xlabel(f"{' / '.join(objectives)} cost, ratio to uniform 8/8")
    ax.set_ylabel("accuracy on reward split (%)")
    title = runs[0].label if len(runs) == 1 else " vs ".join(r.label for r in runs)
    ax.set_title(f"Accuracy vs cost: {title}")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.005, 1.0))
    return figure


def _task_key(run: Run) -> str:
    """Runs with equal keys have the same uniform policies at the same costs."""
    return json.dumps({k: run.env.get(k) for k in ("model", "dataset", "input_size", "width_mult", "hardware",
                                                   "objective", "pin_first_last", "min_bits", "max_bits",
                                                   "weight_method", "split_seed")}, sort_keys=True, default=str)


def _merged_uniform(runs: Sequence[Run]) -> pd.DataFrame:
    """uniform_baselines of the first run, accuracy filled in from the other runs' episodes."""
    merged = uniform_baselines(runs[0])
    for run in runs[1:]:
        other = uniform_baselines(run)
        missing = merged["accuracy"].isna() & other["accuracy"].notna()
        merged.loc[missing, "accuracy"] = other.loc[missing, "accuracy"]
    return merged


def _draw_uniform(ax: Any, uniform: pd.DataFrame, suffix: str, color: str = "black") -> None:
    measured = uniform.dropna(subset=["accuracy"])
    if len(measured):
        ax.scatter(measured["cost_ratio"], measured["accuracy"], marker="s", s=40, color=color,
                   edgecolor="black",
                   zorder=4, label=f"uniform B/B{suffix}")
        for _, row in measured.iterrows():
            ax.annotate(f"{int(row['bits'])}/{int(row['bits'])}", (row["cost_ratio"], row["accuracy"]),
                        textcoords="offset points", xytext=(4, 4), fontsize=7)
    unmeasured = uniform[uniform["accuracy"].isna()]
    for i, (_, row) in enumerate(unmeasured.iterrows()):
        ax.axvline(row["cost_ratio"], color=color, ls=":", lw=1, alpha=0.6,
                   label=f"uniform B/B cost (not evaluated){suffix}" if i == 0 else None)
        ax.text(row["cost_ratio"], 1.0, f" {int(row['bits'])}/{int(row['bits'])}", rotation=90,
                transform=ax.get_xaxis_transform(), fontsize=7, color=color, va="top", ha="right")


# --------------------------------------------------------------------------- report
def _markdown_table(frame: pd.DataFrame, digits: int = 4) -> str:
    """A GitHub markdown table (no tabulate dependency); floats to ``digits`` significant."""
    def cell(value: Any) -> str:
        if isinstance(value, (list, tuple, np.ndarray)):
            values = list(value)
            return f"mixed, mean {np.mean(values):.2f}" if len(set(values)) > 1 else (
                str(values[0]) if values else "")
        if isinstance(value, (bool, np.bool_)):
            return "yes" if value else "no"
        if isinstance(value, (int, np.integer)):
            return f"{value:,}" if abs(int(value)) >= 1e4 else str(value)
        if isinstance(value, (float, np.floating)):
            if not math.isfinite(value):
                return "-"
            magnitude = abs(float(value))
            if float(value).is_integer() and magnitude < 1e15:
                return f"{int(value):,}" if magnitude >= 1e4 else str(int(value))
            return f"{value:.{digits}g}" if magnitude < 1e4 else f"{value:,.0f}"
        if value is None:
            return "-"
        return str(value).replace("|", "\\|")

    header = "| " + " | ".join(str(c) for c in frame.columns) + " |"
    rule = "|" + "|".join("---" for _ in frame.columns) + "|"
    body = ["| " + " | ".join(cell(v) for v in row) + " |" for row in frame.itertuples(index=False)]
    return "\n".join([header, rule, *body])


def _default_out(runs: Sequence[Run]) -> Path:
    if len(runs) == 1:
        return runs[0].path
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    return Path("reports") / f"compare-{stamp}"


def _unique_labels(runs: list[Run]) -> None:
    """Give runs distinct labels (directory name, then parent/name, then a counter)."""
    labels = [r.label for r in runs]
    if len(set(labels)) == len(labels):
        return
    for run in runs:
        run.label = f"{run.path.parent.name}/{run.path.name}"
    counts: dict[str, int] = {}
    for run in runs:
        counts[run.label] = counts.get(run.label, 0) + 1
        if counts[run.label] > 1:
            run.label = f"{run.label} #{counts[run.label]}"


def _safe(label: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in label)


def write_report(run_dirs: Sequence[str | os.PathLike[str] | Run] | str | os.PathLike[str] | Run,
                 out_dir: str | os.PathLike[str] | None = None) -> Path:
    """Write ``report.md`` and ``report/`` (PNG figures + CSV tables) into ``out_dir``; return report.md.

    ``out_dir`` defaults to the run directory for one run and to
    ``reports/compare-<timestamp>`` for several. Figures: bits.png, cost_share.png,
    curve.png, pareto.png. Tables: ``policy_table[-<run>].csv``, ``episodes[-<run>].csv``
    (with the running best), ``pareto[-<run>].csv``, ``uniform[-<run>].csv``,
    ``comparison[-<run>].csv`` (fine-tuned runs) and ``runs.csv`` (several runs).
    Everything is written to a temporary folder first and renamed into place, so a
    crash never leaves a half-written report.
    """
    runs = _as_runs(run_dirs)
    _unique_labels(runs)
    out = Path(out_dir) if out_dir is not None else _default_out(runs)
    out.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=out, prefix=".report-"))
    try:
        files = staging / REPORT_FOLDER
        files.mkdir()
        text = _render(runs, files)
        (staging / REPORT_FILE).write_text(text)
        _swap_into_place(staging, out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    logger.info("wrote report %s", out / REPORT_FILE)
    return out / REPORT_FILE


def _swap_into_place(staging: Path, out: Path) -> None:
    """Rename the staged folder of files, then report.md, over the old ones."""
    target = out / REPORT_FOLDER
    old = None
    if target.exists():
        old = out / f".{REPORT_FOLDER}.old-{os.getpid()}"
        if old.exists():
            shutil.rmtree(old)
        os.replace(target, old)
    os.replace(staging / REPORT_FOLDER, target)
    os.replace(staging / REPORT_FILE, out / REPORT_FILE)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _save(figure: Figure, path: Path) -> None:
    figure.savefig(path, dpi=110)


def _render(runs: list[Run], files: Path) -> str:
    """Write figures and CSVs into ``files``; return the markdown text."""
    several = len(runs) > 1
    link = REPORT_FOLDER
    lines: list[str] = []
    if several:
        lines += [f"# HAQ report: {' vs '.join(r.label for r in runs)}", ""]
        best = best_table(runs)
        best.to_csv(files / "runs.csv", index=False)
        lines += ["## Best policy of each run", "", _markdown_table(best), "",
                  f"Table: [{link}/runs.csv]({link}/runs.csv)", ""]
    else:
        lines += [f"# HAQ report: {runs[0].label}", ""]

    for run in runs:
        suffix = f"-{_safe(run.label)}" if several else ""
        heading = "##" if not several else "###"
        if several:
            lines += [f"## {run.label}", ""]
        lines += _summary_lines(run)
        comparison = comparison_table(run)
        lines += [f"{heading} Fine-tuned comparison", ""]
        if comparison is None:
            lines += [f"Not fine-tuned yet: run `haq-rl finetune {run.path}` to add the float, uniform "
                      "and searched rows (accuracy on the test split after QAT).", ""]
        else:
            comparison.to_csv(files / f"comparison{suffix}.csv", index=False)
            shown = [c for c in (*COMPARISON_COLUMNS, "mean_w_bits", "mean_a_bits") if c in comparison.columns
                     and c not in ("w_bits", "a_bits")]
            finetune = (run.metrics or {}).get("finetune") or {}
            detail = ", ".join(f"{k} {finetune[k]}" for k in ("epochs", "lr", "batch_size", "seed") if k in finetune)
            lines += [f"Accuracy on the test split before and after fine-tuning{f' ({detail})' if detail else ''}; "
                      "ratios are to uniform 8/8.", "", _markdown_table(comparison[shown]), ""]
            versus = (run.metrics or {}).get("searched_vs_uniform4")
            if isinstance(versus, dict) and versus:
                lines += ["Searched vs uniform 4/4: " + ", ".join(
                    f"{k.replace('_', ' ')} {v:.4g}" if isinstance(v, (int, float)) else f"{k.replace('_', ' ')} -"
                    for k, v in versus.items()) + ".", ""]
            lines += [f"Table: [{link}/comparison{suffix}.csv]({link}/comparison{suffix}.csv)", ""]
        table = policy_table(run)
        table.to_csv(files / f"policy_table{suffix}.csv", index=False)
        objective = OBJECTIVE_COLUMNS[run.objective]
        shown = ["layer", "kind", "w_bits", "a_bits", "macs"] + [
            c for c in (*_cost_metrics(table, run.objective), objective) if c in table.columns][:2]
        shown = list(dict.fromkeys(shown + ["share", "share_8bit"]))
        view = table[shown].copy()
        view["share"] = (100 * view["share"]).round(2)
        view["share_8bit"] = (100 * view["share_8bit"]).round(2)
        view = view.rename(columns={"share": f"{run.objective} share %",
                                    "share_8bit": f"{run.objective} share at 8/8 %"})
        lines += [f"{heading} Best policy per layer", "", _markdown_table(view), "",
                  f"Full table (every cost at the policy and at 8/8): "
                  f"[{link}/policy_table{suffix}.csv]({link}/policy_table{suffix}.csv)", ""]
        frame = episodes(run)
        frame.to_csv(files / f"episodes{suffix}.csv", index=False)
        front = pareto_front(frame, "cost_ratio", "accuracy") if not frame.empty else frame
        base_cols = [c for c in (*BASE_COLUMNS, "mean_w_bits", "mean_a_bits") if c in front.columns]
        front.to_csv(files / f"pareto{suffix}.csv", index=False)
        uniform = uniform_baselines(run)
        uniform.to_csv(files / f"uniform{suffix}.csv", index=False)
        lines += [f"{heading} Pareto front of the evaluated policies", "",
                  _markdown_table(front[base_cols].drop(columns=["bits_lowered"], errors="ignore")), "",
                  f"{heading} Uniform baselines", "",
                  "Cost from the cost table; accuracy from episodes.csv where that exact policy was "
                  "evaluated (reward split), else `-`.", "", _markdown_table(uniform), ""]

    figures = (
        ("bits", "Bits per layer", plot_bits,
         "Weight and activation bits of the best policy; colour (or hatch when comparing) marks the layer kind."),
        ("cost_share", "Cost share per layer", plot_cost_share,
         "Each layer's share of the model's latency/energy (or the objective's cost) at the best policy and at 8/8."),
        ("curve", "Search curve", plot_curve,
         "Reward and accuracy of every episode; thick lines are the running best within budget."),
        ("pareto", "Accuracy vs cost", plot_pareto,
         "Every evaluated policy, the Pareto front, the best policy (star), the budget and the uniform baselines."),
    )
    lines += ["## Figures", ""]
    for name, title, plot, caption in figures:
        figure = plot(runs)
        _save(figure, files / f"{name}.png")
        lines += [f"### {title}", "", caption, "", f"![{title}]({link}/{name}.png)", ""]
    return "\n".join(lines).rstrip() + "\n"


def _summary_lines(run: Run) -> list[str]:
    env, search = run.env, run.search
    meta = run.policy.metadata
    metrics = dict(meta.get("metrics") or {})
    settings = pd.DataFrame([
        ("env", env.get("id")), ("model / dataset", f"{env.get('model')} / {env.get('dataset')} "
                                                    f"({env.get('input_size')} px)"),
        ("hardware profile", meta.get("profile", env.get("hardware"))),
        ("objective / budget", f"{run.objective} <= {run.budget:g} x uniform 8/8"),
        ("bits", f"{env.get('min_bits')}..{env.get('max_bits')}"
                 f"{', first/last pinned to 8' if env.get('pin_first_last') else ''}"),
        ("method / seed", f"{run.method} / {search.get('seed')}"),
        ("episodes", len(run.episodes)),
        ("float accuracy (reward split)", f"{run.float_accuracy:.2f}%"),
        ("best policy", f"episode {meta.get('episode', '?')}: accuracy {metrics.get('accuracy', math.nan):.2f}%, "
                        f"reward {metrics.get('reward', math.nan):.4f}, "
                        f"cost ratio {metrics.get('cost_ratio', math.nan):.4f}"),
        ("best policy cost", ", ".join(f"{COST_LABELS[c]} {_fmt_num(float(metrics[c]))}" for c in COST_COLUMNS
                                       if metrics.get(c) is not None and math.isfinite(float(metrics[c])))),
        ("mean bits (w / a)", f"{np.mean(run.policy.w_bits):.2f} / {np.mean(run.policy.a_bits):.2f}"),
        ("run directory", str(run.path)),
    ], columns=["setting", "value"])
    return [_markdown_table(settings), ""]
