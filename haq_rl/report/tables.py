"""Pandas tables of runs: episodes, per-layer policy costs, uniform baselines, the Pareto front, comparisons."""

from __future__ import annotations

import logging
import math
import os
import re
from collections.abc import Iterable
from typing import Any

import numpy as np
import pandas as pd

from haq_rl.errors import DataFormatError
from haq_rl.run.layout import BEST_POLICY_FILE, METRICS_FILE
from haq_rl.run.load import Run, as_run, as_runs, lookup, table_of
from haq_rl.task import budget as rules
from haq_rl.task.label import fields_label
from haq_rl.task.spec import is_weight_only

logger = logging.getLogger(__name__)

#: episodes.csv / CostTable column of each objective.
OBJECTIVE_COLUMNS = {"latency": "latency_ms", "energy": "energy_uj", "size": "size_bytes", "bops": "bops"}
COST_COLUMNS = ("latency_ms", "energy_uj", "size_bytes", "bops")
COST_LABELS = {"latency_ms": "latency (ms)", "energy_uj": "energy (uJ)", "size_bytes": "weight size (bytes)",
               "bops": "BOPs"}

COMPARISON_COLUMNS = ("name", "w_bits", "a_bits", "accuracy_before", "accuracy", "latency_ms", "energy_uj",
                      "size_bytes", "bops", "cost_ratio", "within_budget", "latency_ratio", "energy_ratio",
                      "size_ratio")

#: metrics.json names its uniform rows "uniform B/B" (with a note for the largest within budget).
_UNIFORM_ROW = re.compile(r"^uniform (\d+)/(\d+)\b")
#: Accuracies within this many points count as equal in the report's conclusions (a print's rounding).
ACCURACY_TIE = 0.005
#: Cost ratios within this of each other count as equal (the budget rule's tolerance).
COST_TIE = rules.BUDGET_TOLERANCE



def episodes(run_or_dir: Run | str | os.PathLike[str]) -> pd.DataFrame:
    """episodes.csv plus the running best.

    Added columns: ``within_budget`` (cost ratio <= budget, and every extra budget met),
    ``best_reward`` (best reward
    so far among policies within budget, NaN before the first), ``best_accuracy`` and
    ``best_cost_ratio`` (of that running-best policy), ``mean_w_bits``, ``mean_a_bits``.
    """
    run = as_run(run_or_dir)
    frame = run.episodes.copy()
    if frame.empty:
        for column in ("within_budget", "best_reward", "best_accuracy", "best_cost_ratio"):
            frame[column] = pd.Series(dtype=float)
        return frame
    frame["within_budget"] = frame["cost_ratio"] <= run.budget + rules.BUDGET_TOLERANCE
    for objective, budget in run.spec_fields.get("extra_budgets") or []:  # several constraints: all of them
        frame["within_budget"] &= frame[f"ratio:{objective}"] <= float(budget) + rules.BUDGET_TOLERANCE
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
    run = as_run(run_or_dir)
    policy = run.policy if policy is None else policy
    table = table_of(run)
    index = {name: i for i, name in enumerate(policy.layer_names)}
    missing = [n for n in run.layers if n not in index]
    if missing:
        raise DataFormatError(f"{run.path / BEST_POLICY_FILE} has no bits for layer(s) {', '.join(missing)}")
    order = [index[n] for n in run.layers]
    w = np.asarray(policy.w_bits)[order].astype(np.int64)
    a = np.asarray(policy.a_bits)[order].astype(np.int64)
    ref = np.full(len(w), rules.REFERENCE_BITS)
    frame = pd.DataFrame({
        "layer": run.layers, "kind": table.kinds, "w_bits": w, "a_bits": a,
        "macs": [s.macs for s in table.specs], "params": [s.weight_count for s in table.specs],
    })
    for column in COST_COLUMNS:
        array = getattr(table, column)
        at_policy, at_ref = lookup(array, w, a), lookup(array, ref, ref)
        frame[column] = at_policy
        frame[f"{column}_8bit"] = at_ref
        frame[f"{column}_share"] = cost_share(at_policy)
        frame[f"{column}_share_8bit"] = cost_share(at_ref)
    objective = OBJECTIVE_COLUMNS[run.objective]
    frame["share"] = frame[f"{objective}_share"]
    frame["share_8bit"] = frame[f"{objective}_share_8bit"]
    # Held at 8 bits by the env (first/last layer), not chosen by the search.
    frame["pinned"] = pinned_mask(run)
    return frame


def pinned_mask(run: Run) -> np.ndarray:
    """Which of the run's layers the env held at 8 bits (``pin_first_last``), in layer order."""
    return rules.pinned_layers(len(run.layers), bool(run.spec_fields.get("pin_first_last", True)))


def cost_share(values: np.ndarray) -> np.ndarray:
    total = np.nansum(values)
    if not np.isfinite(values).any() or total <= 0:
        return np.full(values.shape, np.nan)
    return values / total


def uniform_baselines(run_or_dir: Run | str | os.PathLike[str]) -> pd.DataFrame:
    """Uniform B/B policies for B = max_bits .. min_bits: cost from the table, accuracy if evaluated.

    Layers the env pins (first/last with ``pin_first_last``) stay at 8 bits and weight-only
    objectives keep activations at 8, exactly as the search's uniform baseline builds them.
    ``accuracy`` is that of a matching row of episodes.csv (the reward split), else NaN;
    ``finetuned_accuracy`` that of metrics.json's row of the same policy after
    ``haq-rl finetune`` (the test split), else NaN.
    Columns: ``bits``, ``name``, ``cost``, ``cost_ratio``, ``within_budget``, ``accuracy``, ``episode``,
    ``finetuned_accuracy``.
    """
    run = as_run(run_or_dir)
    table = table_of(run)
    env = run.spec_fields
    n = len(run.layers)
    pinned = rules.pinned_layers(n, bool(env.get("pin_first_last", True)))
    weight_only = is_weight_only([run.objective, *(name for name, _ in run.spec_fields.get("extra_budgets") or [])])
    cost_array = np.asarray(table.objective(run.objective), dtype=np.float64)
    ref = np.full(n, rules.REFERENCE_BITS)
    reference = float(lookup(cost_array, ref, ref).sum())
    w_cols = [f"w:{name}" for name in run.layers]
    a_cols = [f"a:{name}" for name in run.layers]
    have_bits = not run.episodes.empty and all(c in run.episodes.columns for c in w_cols + a_cols)
    finetuned = _finetuned_uniform(run)
    rows = []
    for bits in range(int(env.get("max_bits", 8)), int(env.get("min_bits", 2)) - 1, -1):
        w, a = rules.uniform_bits(pinned, weight_only, bits)
        cost = float(lookup(cost_array, w, a).sum())
        accuracy, episode = math.nan, None
        if have_bits:
            match = ((run.episodes[w_cols].to_numpy() == w).all(axis=1)
                     & (run.episodes[a_cols].to_numpy() == a).all(axis=1))
            if match.any():
                first = run.episodes[match].iloc[0]
                accuracy, episode = float(first["accuracy"]), int(first["episode"])
        rows.append({"bits": bits, "name": f"uniform {bits}/{bits}", "cost": cost,
                     "cost_ratio": cost / reference if reference > 0 else math.nan,
                     "within_budget": rules.is_within_budget(cost / reference, run.budget) if reference > 0 else False,
                     "accuracy": accuracy, "episode": episode,
                     "finetuned_accuracy": finetuned.get(bits, math.nan)})
    return pd.DataFrame(rows)


def _finetuned_uniform(run: Run) -> dict[int, float]:
    """bits -> test accuracy after fine-tuning of metrics.json's uniform B/B rows."""
    found: dict[int, float] = {}
    for row in (run.metrics or {}).get("rows") or []:
        match = _UNIFORM_ROW.match(str(row.get("name", ""))) if isinstance(row, dict) else None
        accuracy = _number(row.get("accuracy")) if match else math.nan
        if match and match.group(1) == match.group(2) and math.isfinite(accuracy):
            found[int(match.group(1))] = accuracy
    return found


def _number(value: Any) -> float:
    try:
        return float(value) if value is not None else math.nan
    except (TypeError, ValueError):
        return math.nan


def finetuned_points(run_or_dir: Run | str | os.PathLike[str]) -> pd.DataFrame | None:
    """What the user can keep after ``haq-rl finetune``: metrics.json's quantized rows
    (uniform and searched) with their cost ratio and test accuracy after fine-tuning, or
    None before fine-tuning. Columns: ``name``, ``cost_ratio``, ``accuracy``,
    ``accuracy_before``, ``within_budget``."""
    return metrics_points(as_run(run_or_dir).metrics)


def metrics_points(metrics: dict[str, Any] | None) -> pd.DataFrame | None:
    """:func:`finetuned_points` of a metrics.json dict (``finetune_run``'s return value)."""
    rows = (metrics or {}).get("rows")
    if not isinstance(rows, list):
        return None
    points = [{"name": str(row.get("name")), "cost_ratio": _number(row.get("cost_ratio")),
               "accuracy": _number(row.get("accuracy")), "accuracy_before": _number(row.get("accuracy_before")),
               "within_budget": row.get("within_budget")}
              for row in rows if isinstance(row, dict) and row.get("name") != "float"]
    frame = pd.DataFrame(points, columns=["name", "cost_ratio", "accuracy", "accuracy_before", "within_budget"])
    frame = frame.dropna(subset=["cost_ratio", "accuracy"])
    return frame if not frame.empty else None


def kept_front(run_or_dir: Run | str | os.PathLike[str]) -> pd.DataFrame:
    """The Pareto front of what the user keeps: of the fine-tuned policies (test accuracy
    after fine-tuning) once the run is fine-tuned, else of the evaluated episodes (reward
    split, post-training). The search's own accuracies rank policies before fine-tuning;
    the fine-tuned ones are the models the user ships."""
    run = as_run(run_or_dir)
    points = finetuned_points(run)
    if points is not None:
        return pareto_front(points, "cost_ratio", "accuracy")
    frame = episodes(run)
    return pareto_front(frame, "cost_ratio", "accuracy") if not frame.empty else frame


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
    run = as_run(run_or_dir)
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


def end_to_end_table(run_or_dir: Run | str | os.PathLike[str]) -> pd.DataFrame | None:
    """metrics.json's rows and the search's best policies timed whole on this CPU (``haq-rl
    finetune`` on a measured target): predicted and measured latency ratio to 8/8, the measured
    spread over rounds, ms, and ``measured_within_budget`` (False: over a latency budget when
    measured, whatever the table predicted); None when nothing was timed."""
    run = as_run(run_or_dir)
    measured = (run.metrics or {}).get("end_to_end")
    if not isinstance(measured, dict):
        return None
    entries = [*run.metrics.get("rows", []), *measured.get("top_policies", [])]
    rows = [{"name": entry["name"], "predicted_latency_ratio": entry.get("latency_ratio"),
             "measured_latency_ratio": entry["measured_latency_ratio"],
             "measured_ratio_low": entry["measured_latency_ratio_spread"][0],
             "measured_ratio_high": entry["measured_latency_ratio_spread"][1],
             "fastest_round_ratio": entry.get("measured_fastest_ratio"),
             "measured_latency_ms": entry["measured_latency_ms"],
             "measured_within_budget": entry["measured_within_budget"]}
            for entry in entries if isinstance(entry, dict) and "measured_latency_ratio" in entry]
    return pd.DataFrame(rows) if rows else None


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
    for run in as_runs(runs):
        meta = run.policy.metadata if hasattr(run.policy, "metadata") else {}
        metrics = dict(meta.get("metrics") or {})
        searched = None
        table = comparison_table(run)
        if table is not None and "name" in table.columns:
            match = table[table["name"] == "searched"]
            searched = match.iloc[0] if len(match) else None
        # A user's model is shown with its weights' hash; a shipped env's by its zoo name.
        label, own = fields_label(run.spec_fields)
        rows.append({
            "run": run.label, "env": run.spec_fields.get("id"),
            "model": label if own else run.spec_fields.get("model"),
            "hardware": run.spec_fields.get("hardware"), "objective": run.objective, "budget": run.budget,
            "method": run.method, "episodes": len(run.episodes), "float_accuracy": run.float_accuracy,
            "best_episode": meta.get("episode"),
            **{k: metrics.get(k, math.nan) for k in ("reward", "accuracy", "cost_ratio", *COST_COLUMNS)},
            "mean_w_bits": float(np.mean(run.policy.w_bits)), "mean_a_bits": float(np.mean(run.policy.a_bits)),
            "finetuned_accuracy": float(searched["accuracy"]) if searched is not None else math.nan,
        })
    return pd.DataFrame(rows)




def budget_front(run_or_dir: Run | str | os.PathLike[str]) -> pd.DataFrame | None:
    """A conditioned run's best policy per budget, with its fine-tuned result where there is one.

    Columns: ``budget``, ``episode``, ``accuracy`` and ``cost_ratio`` (reward split, as
    searched), ``mean_w_bits``, ``mean_a_bits``, then from the budget's metrics.json
    (``haq-rl finetune RUN --budget B``): ``test_accuracy_before``, ``test_accuracy`` (after
    fine-tuning) and ``uniform_accuracy`` (the largest uniform policy within that budget,
    same fine-tune). None for a run of one budget.
    """
    run = as_run(run_or_dir)
    if run.front is None:
        return None
    frame = run.front[["budget", "episode", "accuracy", "cost_ratio", "mean_w_bits", "mean_a_bits"]].copy()
    before, after, uniform = [], [], []
    for budget in frame["budget"]:
        rows = {row["name"]: row for row in (run.budget_metrics.get(float(budget)) or {}).get("rows", [])}
        searched = rows.get("searched") or {}
        before.append(searched.get("accuracy_before"))
        after.append(searched.get("accuracy"))
        within = [row for row in rows.values() if row["name"].startswith("uniform") and row.get("within_budget")]
        uniform.append(max((row["accuracy"] for row in within), default=None))
    frame["test_accuracy_before"] = pd.to_numeric(pd.Series(before, dtype=object), errors="coerce").to_numpy()
    frame["test_accuracy"] = pd.to_numeric(pd.Series(after, dtype=object), errors="coerce").to_numpy()
    frame["uniform_accuracy"] = pd.to_numeric(pd.Series(uniform, dtype=object), errors="coerce").to_numpy()
    return frame


def one_line(text: str) -> str:
    """``text`` on one line: a newline or other control character (a run directory's name,
    a layer name in config.json) shown escaped, so it cannot start a heading or a table of
    its own in report.md."""
    return "".join(char if char.isprintable() else repr(char)[1:-1] for char in text)
