"""Matplotlib figures of runs (object-oriented API on the Agg backend: no window, no pyplot state): bits per
layer, cost shares and the learning curve; the accuracy-cost figures are in ``front_figures``."""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from haq_rl.report.tables import (
    COST_LABELS,
    OBJECTIVE_COLUMNS,
    episodes,
    pinned_mask,
    policy_table,
)
from haq_rl.run.load import Run, as_runs, table_of

logger = logging.getLogger(__name__)

KIND_COLORS = {"conv": "#1f77b4", "depthwise": "#ff7f0e", "grouped": "#9467bd", "linear": "#2ca02c"}
KIND_HATCHES = {"conv": "", "depthwise": "///", "grouped": "xxx", "linear": "..."}
PHASE_COLORS = {"warm-up": "#ffd92f", "explore": "#8da0cb", "final": "#66c2a5", "random": "#b3b3b3",
                "uniform": "#fc8d62", "greedy": "#a6d854"}


def new_figure(width: float, height: float) -> Figure:
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


def run_colors(count: int) -> list[str]:
    return [f"C{i % 10}" for i in range(count)]


def plot_bits(runs: Run | str | os.PathLike[str] | Iterable[Run | str | os.PathLike[str]]) -> Figure:
    """Bar charts of weight bits (top) and activation bits (bottom) per layer.

    One run: bar colour = layer kind (conv, depthwise, grouped, linear). Several runs with
    the same layers: grouped bars, colour = run, hatch = layer kind. Runs with different
    layers get one pair of panels each. Every bar series is a BarContainer labelled with
    the run's label (``ax.containers``), in the order of the runs. Layers the env pins at
    8 bits (first/last) are shaded grey and named in the legend ("pinned at 8 bits").
    """
    runs = as_runs(runs)
    same_layers = all(r.layers == runs[0].layers for r in runs)
    groups = [runs] if same_layers else [[r] for r in runs]
    width = _layer_width(max(len(r.layers) for r in runs) * (len(runs) if same_layers else 1) ** 0.5)
    panel = 1.9 + _label_height([n for r in runs for n in r.layers])
    figure = new_figure(width, 2 * panel * len(groups) + 0.3)
    axes = figure.subplots(2 * len(groups), 1, squeeze=False)[:, 0]
    for g, group in enumerate(groups):
        layers = group[0].layers
        kinds = table_of(group[0]).kinds
        pinned = pinned_mask(group[0])
        x = np.arange(len(layers))
        bar_width = 0.8 / len(group)
        colors = run_colors(len(runs)) if len(group) > 1 else None
        for p, (part, title) in enumerate((("w", "Weight bits"), ("a", "Activation bits"))):
            ax = axes[2 * g + p]
            for i in np.flatnonzero(pinned):  # behind the bars: the env chose these bits, not the search
                ax.axvspan(i - 0.5, i + 0.5, color="#d9d9d9", zorder=0, lw=0)
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
            ax.set_ylim(0, max(8, int(group[0].spec_fields.get("max_bits", 8))) + 1)
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
            if pinned.any():
                handles.append(Patch(facecolor="#d9d9d9", label="pinned at 8 bits"))
            ax.legend(handles=handles, fontsize=7, loc="upper left", bbox_to_anchor=(1.005, 1.0))
    return figure


def cost_metrics(table: pd.DataFrame, objective: str) -> list[str]:
    """Latency and energy when the profile models them, else the objective's own cost."""
    metrics = [c for c in ("latency_ms", "energy_uj") if table[c].notna().any()]
    return metrics or [OBJECTIVE_COLUMNS[objective]]


def plot_cost_share(runs: Run | str | os.PathLike[str] | Iterable[Run | str | os.PathLike[str]]) -> Figure:
    """Each layer's share (%) of the model's latency / energy at the searched policy and at 8/8.

    One row of panels per run, one panel per cost (latency and energy where the hardware
    profile has them, else the objective's cost such as size or BOPs). Bar containers are
    labelled ``"searched"`` and ``"8/8"``; heights are ``100 * policy_table <cost>_share``.
    """
    runs = as_runs(runs)
    tables = [policy_table(r) for r in runs]
    panels = [(run, table, metric) for run, table in zip(runs, tables, strict=True)
              for metric in cost_metrics(table, run.objective)]
    # One panel per row: long layer lists need the full width, side by side they'd be unreadable.
    panel = 2.3 + _label_height([n for r in runs for n in r.layers])
    figure = new_figure(_layer_width(max(len(r.layers) for r in runs)), panel * len(panels) + 0.3)
    axes = figure.subplots(len(panels), 1, squeeze=False)[:, 0]
    for ax, (run, table, metric) in zip(axes, panels, strict=True):
        x = np.arange(len(table))
        total, total_ref = table[metric].sum(), table[f"{metric}_8bit"].sum()
        ax.bar(x - 0.2, 100 * table[f"{metric}_share"], width=0.4, color="C0", label="searched")
        ax.bar(x + 0.2, 100 * table[f"{metric}_share_8bit"], width=0.4, color="C7", label="8/8")
        name, _, unit = COST_LABELS[metric].partition(" (")
        unit = unit.rstrip(")")
        ratio = f" ({total / total_ref:.1%})" if total_ref else ""
        ax.set_title(f"{run.label}: share of {name} per layer - total {format_number(total)} {unit} searched "
                     f"vs {format_number(total_ref)} {unit} at 8/8{ratio}", fontsize=10)
        ax.set_ylabel(f"% of model {name}")
        ax.grid(axis="y", alpha=0.3)
        _set_layer_ticks(ax, list(table["layer"]))
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.005, 1.0))
    return figure


def format_number(value: float) -> str:
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
    ``"<run> accuracy of best-reward policy"`` (the best is the highest reward, e.g. the
    lowest KL, not the highest accuracy); their y-data are the columns ``reward``, ``best_reward``,
    ``accuracy`` and ``best_accuracy`` of :func:`episodes`. Phases (warm-up / explore /
    final, or the baseline's name) are shaded when a single run is plotted.
    """
    runs = as_runs(runs)
    figure = new_figure(10, 7)
    ax_reward, ax_acc = figure.subplots(2, 1, sharex=True)
    colors = run_colors(len(runs))
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
                    label=f"{run.label} accuracy of best-reward policy")
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
