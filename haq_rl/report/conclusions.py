"""What a run's numbers mean, in plain sentences for the top of report.md.

A report of tables and figures leaves the reader to find out that a uniform policy did as
well as the search, that the float row was never fine-tuned, or that the "best" policy is
the one of highest reward, not of highest accuracy. These sentences say it.
"""

from __future__ import annotations

import math
import os
from typing import Any

from haq_rl.report.tables import (
    ACCURACY_TIE,
    COST_TIE,
    episodes,
    finetuned_points,
    metrics_points,
    one_line,
    uniform_baselines,
)
from haq_rl.run.load import Run, as_run


def conclusions(run_or_dir: Run | str | os.PathLike[str]) -> list[str]:
    """Plain sentences on the run: after fine-tuning, from metrics.json (test split); before,
    from the search's own evaluations (reward split, post-training)."""
    run = as_run(run_or_dir)
    points = finetuned_points(run)
    if points is not None and (points["name"] == "searched").any():
        return finetune_conclusions(run.metrics or {})
    return _before_finetune(run)


def finetune_conclusions(metrics: dict[str, Any]) -> list[str]:
    """The sentences on a fine-tuned comparison (metrics.json, or what ``finetune_run``
    returned): the searched policy against the uniform ones, and the float row's note.
    Empty when the comparison has no searched row."""
    points = metrics_points(metrics)
    if points is None or not (points["name"] == "searched").any():
        return []
    return _after_finetune(metrics, points)


def dominates(accuracy: float, cost: float, than_accuracy: float, than_cost: float) -> bool:
    """Equal or higher accuracy at equal or lower cost (ties within rounding count as equal)."""
    return accuracy >= than_accuracy - ACCURACY_TIE and cost <= than_cost + COST_TIE


def _after_finetune(metrics: dict[str, Any], points: Any) -> list[str]:
    searched = points[points["name"] == "searched"].iloc[0]
    s_acc, s_cost = float(searched["accuracy"]), float(searched["cost_ratio"])
    uniform = points[points["name"].str.startswith("uniform")]
    lines: list[str] = []
    winners = [row for _, row in uniform.iterrows()
               if dominates(float(row["accuracy"]), float(row["cost_ratio"]), s_acc, s_cost)]
    if winners:
        # The most accurate of them, then the cheapest: the one to keep instead.
        best = max(winners, key=lambda row: (float(row["accuracy"]), -float(row["cost_ratio"])))
        name = _short_name(str(best["name"]))
        lines.append(
            f"**{name[0].upper()}{name[1:]} matches or beats the searched policy** after the same fine-tune: "
            f"{float(best['accuracy']):.2f} % vs {s_acc:.2f} % test accuracy at cost ratio "
            f"{float(best['cost_ratio']):.3f} vs {s_cost:.3f}. Keep {name}, or search again "
            "(more episodes, another method or reward).")
    else:
        cheaper = [row for _, row in uniform.iterrows() if float(row["cost_ratio"]) <= s_cost + COST_TIE]
        if cheaper:
            best = max(cheaper, key=lambda row: float(row["accuracy"]))
            lines.append(
                f"The searched policy beats every uniform policy that costs as little: {s_acc:.2f} % test "
                f"accuracy at cost ratio {s_cost:.3f}, against {float(best['accuracy']):.2f} % for "
                f"{_short_name(str(best['name']))} at {float(best['cost_ratio']):.3f} "
                f"({s_acc - float(best['accuracy']):+.2f} points).")
        elif len(uniform):
            cheapest = min((row for _, row in uniform.iterrows()), key=lambda row: float(row["cost_ratio"]))
            lines.append(
                f"No uniform policy fine-tuned here costs as little as the searched one (cost ratio "
                f"{s_cost:.3f}, {s_acc:.2f} %); the cheapest, {_short_name(str(cheapest['name']))}, costs "
                f"{float(cheapest['cost_ratio']):.3f} at {float(cheapest['accuracy']):.2f} %.")
    lines.append(_float_note(metrics, points))
    return lines


def _float_note(metrics: dict[str, Any], points: Any) -> str:
    """The float row is the pretrained model: say so, and say when that flatters the quantized rows."""
    epochs = (metrics.get("finetune") or {}).get("epochs")
    floats = [row for row in metrics.get("rows") or [] if isinstance(row, dict) and row.get("name") == "float"]
    float_acc = _number(floats[0].get("accuracy")) if floats else math.nan
    if epochs == 0:  # --epochs 0 measures every starting model as it is: float included
        return "No row was fine-tuned (0 epochs): every accuracy is the starting model's, float's included."
    given = f"{epochs} epoch(s) of" if epochs is not None else "the same"
    note = (f"The float row is the pretrained model, not fine-tuned; every quantized row had {given} "
            "fine-tuning on search_train.")
    above = points[points["accuracy"] > float_acc + ACCURACY_TIE] if math.isfinite(float_acc) else points.iloc[:0]
    if len(above):
        note += (f" {len(above)} quantized row(s) score above float ({float_acc:.2f} %): that extra training, "
                 "not quantization, is the likely cause.")
    return note


def _before_finetune(run: Run) -> list[str]:
    lines: list[str] = []
    meta = run.policy.metadata if hasattr(run.policy, "metadata") else {}
    metrics = dict(meta.get("metrics") or {})
    b_acc, b_cost = _number(metrics.get("accuracy")), _number(metrics.get("cost_ratio"))
    if not (math.isfinite(b_acc) and math.isfinite(b_cost)):
        return lines
    uniform = uniform_baselines(run).dropna(subset=["accuracy"])
    episode = meta.get("episode")
    winners = [row for _, row in uniform.iterrows() if row["episode"] != episode
               and dominates(float(row["accuracy"]), float(row["cost_ratio"]), b_acc, b_cost)]
    if winners:
        best = max(winners, key=lambda row: (float(row["accuracy"]), -float(row["cost_ratio"])))
        lines.append(
            f"**Uniform {int(best['bits'])}/{int(best['bits'])} matches or beats the best policy** as searched "
            f"(reward split, post-training): {float(best['accuracy']):.2f} % vs {b_acc:.2f} % at cost ratio "
            f"{float(best['cost_ratio']):.3f} vs {b_cost:.3f}. Fine-tune both to decide "
            f"(`haq-rl finetune {one_line(str(run.path))}`).")
    frame = episodes(run)
    metric = str(run.spec_fields.get("reward_metric", "accuracy"))
    if not frame.empty and episode is not None:
        better = frame[frame["within_budget"] & (frame["episode"] != episode)
                       & (frame["accuracy"] > b_acc + ACCURACY_TIE) & (frame["cost_ratio"] <= b_cost + COST_TIE)]
        if len(better):
            top = better.sort_values(["accuracy", "cost_ratio"], ascending=[False, True]).iloc[0]
            lines.append(
                f"The best policy is the one of highest reward ({metric}), not of highest accuracy: "
                f"{len(better)} other evaluated policy(ies) within the budget score higher on the reward split "
                f"at equal or lower cost (episode {int(top['episode'])}: {float(top['accuracy']):.2f} % at "
                f"cost ratio {float(top['cost_ratio']):.3f}). Fine-tuning decides which keeps more.")
    lines.append(f"Not fine-tuned yet: accuracies are post-training, on the reward split. "
                 f"`haq-rl finetune {one_line(str(run.path))}` fine-tunes the best policy beside the uniform ones.")
    return lines


def _short_name(name: str) -> str:
    """``uniform 3/3 (largest within budget)`` -> ``uniform 3/3``."""
    return name.split(" (")[0]


def _number(value: Any) -> float:
    try:
        return float(value) if value is not None else math.nan
    except (TypeError, ValueError):
        return math.nan

