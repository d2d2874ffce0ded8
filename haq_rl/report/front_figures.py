"""Matplotlib figures of the accuracy-cost trade-off: every policy with its Pareto front
(``plot_pareto``) and the accuracy per budget of conditioned runs (``plot_front``), beside the
uniform baselines. The per-layer and per-episode figures are in ``figures``."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Sequence
from typing import Any

import pandas as pd
from matplotlib.figure import Figure

from haq_rl.report.figures import new_figure, run_colors
from haq_rl.report.tables import (
    budget_front,
    episodes,
    finetuned_points,
    pareto_front,
    uniform_baselines,
)
from haq_rl.run.load import Run, as_runs


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
    figure = new_figure(9, 6)
    ax = figure.subplots()
    colors = run_colors(len(runs))
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
    figure = new_figure(9, 6)
    ax = figure.subplots()
    fronts = [(run, budget_front(run)) for run in runs]
    conditioned = [(run, front) for run, front in fronts if front is not None]
    for (run, front), color in zip(conditioned, run_colors(len(conditioned)), strict=True):
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

