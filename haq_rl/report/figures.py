"""Matplotlib figures of runs (object-oriented API on the Agg backend: no window, no pyplot state)."""

from __future__ import annotations

import json
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
    budget_front,
    episodes,
    finetuned_points,
    pareto_front,
    pinned_mask,
    policy_table,
    uniform_baselines,
)
from haq_rl.run.load import Run, as_runs, table_of

logger = logging.getLogger(__name__)

KIND_COLORS = {"conv": "#1f77b4", "depthwise": "#ff7f0e", "grouped": "#9467bd", "linear": "#2ca02c"}
KIND_HATCHES = {"conv": "", "depthwise": "///", "grouped": "xxx", "linear": "..."}
PHASE_COLORS = {"warm-up": "#ffd92f", "explore": "#8da0cb", "final": "#66c2a5", "random": "#b3b3b3",
                "uniform": "#fc8d62", "greedy": "#a6d854"}


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
    the run's label (``ax.containers``), in the order of the runs. Layers the env pins at
    8 bits (first/last) are shaded grey and named in the legend ("pinned at 8 bits").
    """
    runs = as_runs(runs)
    same_layers = all(r.layers == runs[0].layers for r in runs)
    groups = [runs] if same_layers else [[r] for r in runs]
    width = _layer_width(max(len(r.layers) for r in runs) * (len(runs) if same_layers else 1) ** 0.5)
    panel = 1.9 + _label_height([n for r in runs for n in r.layers])
    figure = _new_figure(width, 2 * panel * len(groups) + 0.3)
    axes = figure.subplots(2 * len(groups), 1, squeeze=False)[:, 0]
    for g, group in enumerate(groups):
        layers = group[0].layers
        kinds = table_of(group[0]).kinds
        pinned = pinned_mask(group[0])
        x = np.arange(len(layers))
        bar_width = 0.8 / len(group)
        colors = _run_colors(len(runs)) if len(group) > 1 else None
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


def plot_pareto(runs: Run | str | os.PathLike[str] | Iterable[Run | str | os.PathLike[str]]) -> Figure:
    """Accuracy vs cost ratio of every evaluated policy, the Pareto front and uniform baselines.

    Per run: a scatter of all episodes (``"<run> evaluated"``, reward split, post-training)
    and the budget as a dashed vertical line. Before fine-tuning, the front of the episodes
    (``"<run> Pareto front"``, data = :func:`pareto_front` of :func:`episodes`) and the
    best policy as a star (``"<run> best policy (highest reward)"``). Once fine-tuned
    (metrics.json): the fine-tuned policies as triangles (``"<run> fine-tuned (test)"``,
    test split), the front computed on them (``"<run> Pareto front (fine-tuned)"``: what
    the user keeps), the searched policy as a star where fine-tuning put it
    (``"<run> searched policy, fine-tuned"``) with a hollow star where the search saw it,
    and the float model's accuracy as a dotted line (pretrained, not fine-tuned).
    Uniform B/B policies sit at their table cost: a labelled square where episodes.csv
    holds their accuracy, a dotted vertical line where nothing measured them.
    """
    runs = as_runs(runs)
    figure = _new_figure(9, 6)
    ax = figure.subplots()
    colors = _run_colors(len(runs))
    budgets: set[float] = set()
    any_finetuned = False
    for run, color in zip(runs, colors, strict=True):
        frame = episodes(run)
        points = finetuned_points(run)
        if not frame.empty:
            ax.scatter(frame["cost_ratio"], frame["accuracy"], s=14, color=color, alpha=0.35,
                       label=f"{run.label} evaluated")
            if points is None:
                front = pareto_front(frame, "cost_ratio", "accuracy")
                ax.plot(front["cost_ratio"], front["accuracy"], color=color, lw=1.8, marker="o", ms=4,
                        drawstyle="steps-post", label=f"{run.label} Pareto front")
        metrics = dict(run.policy.metadata.get("metrics") or {})
        searched_at = (metrics.get("cost_ratio"), metrics.get("accuracy"))
        if points is not None:
            any_finetuned = True
            _draw_finetuned(ax, run, points, searched_at, color)
        elif None not in searched_at:
            ax.scatter([searched_at[0]], [searched_at[1]], marker="*", s=180, color=color,
                       edgecolor="black", zorder=5, label=f"{run.label} best policy (highest reward)")
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
    ax.set_ylabel("accuracy (%): evaluated on the reward split, fine-tuned on the test split" if any_finetuned
                  else "accuracy on reward split (%)")
    title = runs[0].label if len(runs) == 1 else " vs ".join(r.label for r in runs)
    ax.set_title(f"Accuracy vs cost: {title}")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.005, 1.0))
    return figure


def _draw_finetuned(ax: Any, run: Run, points: pd.DataFrame, searched_at: tuple[Any, Any], color: str) -> None:
    """The fine-tuned policies of one run, their front, the searched one and the float line."""
    ax.scatter(points["cost_ratio"], points["accuracy"], marker="^", s=55, color=color, edgecolor="black",
               zorder=4, label=f"{run.label} fine-tuned (test)")
    for _, row in points.iterrows():
        name = str(row["name"]).split(" (")[0].replace("uniform ", "")
        # The searched policy's label above its star, the uniform ones below their triangles:
        # a tie (the case that matters most) must stay readable.
        ax.annotate(name, (row["cost_ratio"], row["accuracy"]), textcoords="offset points",
                    xytext=(7, 7) if name == "searched" else (-6, -13), fontsize=7, color=color)
    front = pareto_front(points, "cost_ratio", "accuracy")
    ax.plot(front["cost_ratio"], front["accuracy"], color=color, lw=1.8, drawstyle="steps-post",
            label=f"{run.label} Pareto front (fine-tuned)")
    searched = points[points["name"] == "searched"]
    if len(searched):
        x, y = float(searched["cost_ratio"].iloc[0]), float(searched["accuracy"].iloc[0])
        ax.scatter([x], [y], marker="*", s=200, color=color, edgecolor="black", zorder=6,
                   label=f"{run.label} searched policy, fine-tuned")
        if None not in searched_at:
            before = (float(searched_at[0]), float(searched_at[1]))
            ax.scatter([before[0]], [before[1]], marker="*", s=200, facecolor="none", edgecolor=color, zorder=6,
                       label=f"{run.label} searched policy, as searched (reward split)")
            ax.annotate("", xy=(x, y), xytext=before,
                        arrowprops={"arrowstyle": "->", "color": color, "lw": 0.8, "alpha": 0.7})
    floats = [row for row in (run.metrics or {}).get("rows") or [] if isinstance(row, dict)
              and row.get("name") == "float" and isinstance(row.get("accuracy"), int | float)]
    if floats:
        value = float(floats[0]["accuracy"])
        ax.axhline(value, color=color, ls=":", lw=1,
                   label=f"{run.label} float {value:.2f}% (pretrained, not fine-tuned)")


def _task_key(run: Run) -> str:
    """Runs with equal keys have the same uniform policies at the same costs."""
    return json.dumps({k: run.spec_fields.get(k) for k in ("model", "dataset", "input_size", "width_mult", "hardware",
                                                   "objective", "pin_first_last", "min_bits", "max_bits",
                                                   "weight_method", "split_seed")}, sort_keys=True, default=str)


def _merged_uniform(runs: Sequence[Run]) -> pd.DataFrame:
    """uniform_baselines of the first run, accuracy filled in from the other runs' episodes."""
    merged = uniform_baselines(runs[0])
    for run in runs[1:]:
        other = uniform_baselines(run)
        for column in ("accuracy", "finetuned_accuracy"):
            missing = merged[column].isna() & other[column].notna()
            merged.loc[missing, column] = other.loc[missing, column]
    return merged


def _draw_uniform(ax: Any, uniform: pd.DataFrame, suffix: str, color: str = "black") -> None:
    """Uniform B/B: squares where the search evaluated them; a cost-only line where nothing
    measured them (a fine-tuned one is drawn with the fine-tuned points instead)."""
    measured = uniform.dropna(subset=["accuracy"])
    if len(measured):
        ax.scatter(measured["cost_ratio"], measured["accuracy"], marker="s", s=40, color=color,
                   edgecolor="black",
                   zorder=4, label=f"uniform B/B{suffix}")
        for _, row in measured.iterrows():
            ax.annotate(f"{int(row['bits'])}/{int(row['bits'])}", (row["cost_ratio"], row["accuracy"]),
                        textcoords="offset points", xytext=(4, 4), fontsize=7)
    finetuned = uniform["finetuned_accuracy"].notna() if "finetuned_accuracy" in uniform else False
    unmeasured = uniform[uniform["accuracy"].isna() & ~finetuned]
    for i, (_, row) in enumerate(unmeasured.iterrows()):
        ax.axvline(row["cost_ratio"], color=color, ls=":", lw=1, alpha=0.6,
                   label=f"uniform B/B cost (not evaluated){suffix}" if i == 0 else None)
        ax.text(row["cost_ratio"], 1.0, f" {int(row['bits'])}/{int(row['bits'])}", rotation=90,
                transform=ax.get_xaxis_transform(), fontsize=7, color=color, va="top", ha="right")




def plot_front(runs: Run | str | os.PathLike[str] | Iterable[Run | str | os.PathLike[str]]) -> Figure:
    """Accuracy against budget for budget-conditioned runs, with the uniform baselines.

    Per conditioned run: its best policy per budget at that policy's cost ratio (reward
    split, ``"<run> best per budget"``), and where fine-tuned the test accuracy after
    fine-tuning (``"<run> fine-tuned"``) beside the largest uniform policy within each
    budget after the same fine-tune (``"<run> uniform within budget, fine-tuned"``, at
    the budget). The listed budgets are dotted vertical lines; uniform B/B as in
    :func:`plot_pareto`. Runs of one budget are skipped.
    """
    runs = as_runs(runs)
    figure = _new_figure(9, 6)
    ax = figure.subplots()
    fronts = [(run, budget_front(run)) for run in runs]
    conditioned = [(run, front) for run, front in fronts if front is not None]
    for (run, front), color in zip(conditioned, _run_colors(len(conditioned)), strict=True):
        ax.plot(front["cost_ratio"], front["accuracy"], color=color, marker="o", lw=1.8,
                label=f"{run.label} best per budget")
        if front["test_accuracy"].notna().any():
            ax.plot(front["cost_ratio"], front["test_accuracy"], color=color, marker="^", ls="--",
                    label=f"{run.label} fine-tuned (test)")
            ax.scatter(front["budget"], front["uniform_accuracy"], color=color, marker="s", facecolor="none",
                       label=f"{run.label} uniform within budget, fine-tuned (test)")
        for budget in front["budget"]:
            ax.axvline(budget, color=color, ls=":", lw=0.8, alpha=0.5)
        _draw_uniform(ax, uniform_baselines(run), suffix=f" ({run.label})" if len(conditioned) > 1 else "")
    ax.set_xlabel("cost, ratio to uniform 8/8 (dotted: the searched budgets)")
    ax.set_ylabel("accuracy (%)")
    ax.set_title("Best policy per budget" if conditioned else "No budget-conditioned run")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.005, 1.0))
    return figure
