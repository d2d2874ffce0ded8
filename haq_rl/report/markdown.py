"""``haq-rl report``: report.md and its folder of figures and CSV tables, written atomically."""

from __future__ import annotations

import datetime as _dt
import logging
import math
import os
import shutil
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from haq_rl.fileio import OWN_PREFIX, remove_stale_temps
from haq_rl.report import tables
from haq_rl.report.conclusions import conclusions
from haq_rl.report.figures import (
    cost_metrics,
    format_number,
    plot_bits,
    plot_cost_share,
    plot_curve,
)
from haq_rl.report.front_figures import plot_front, plot_pareto
from haq_rl.report.tables import one_line
from haq_rl.run.episodes import BASE_COLUMNS
from haq_rl.run.layout import REPORT_FILE, REPORT_FOLDER
from haq_rl.run.load import Run, as_runs
from haq_rl.run.lock import run_lock
from haq_rl.task.label import fields_label

logger = logging.getLogger(__name__)

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
        return one_line(str(value)).replace("|", "\\|")

    header = "| " + " | ".join(one_line(str(c)) for c in frame.columns) + " |"
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
    for run in runs:
        run.label = one_line(run.label)
    labels = [r.label for r in runs]
    if len(set(labels)) == len(labels):
        return
    for run in runs:
        run.label = one_line(f"{run.path.parent.name}/{run.path.name}")
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
    runs = as_runs(run_dirs)
    _unique_labels(runs)
    out = Path(out_dir) if out_dir is not None else _default_out(runs)
    with run_lock(out):  # one writer per directory: a concurrent report or finetune fails at once
        _remove_stale_staging(out)
        staging = Path(tempfile.mkdtemp(dir=out, prefix=_STAGING_PREFIX))
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


#: Names of haq-rl's own (see fileio.OWN_PREFIX): a user's ``.report-2024/`` beside them is kept.
_STAGING_PREFIX = f"{OWN_PREFIX}report-"
_OLD_PREFIX = f"{OWN_PREFIX}{REPORT_FOLDER}.old-"


def _remove_stale_staging(out: Path) -> None:
    """Drop the staging folders a killed report left behind (we hold the directory's lock)."""
    for stale in [*out.glob(f"{_STAGING_PREFIX}*"), *out.glob(f"{_OLD_PREFIX}*")]:
        _remove(stale)
    remove_stale_temps(out)


def _remove(path: Path) -> None:
    """Delete a file, a link (not what it points to) or a folder tree of haq-rl's own."""
    if path.is_symlink() or not path.is_dir():
        path.unlink(missing_ok=True)
    else:
        shutil.rmtree(path, ignore_errors=True)


def _swap_into_place(staging: Path, out: Path) -> None:
    """Rename the staged folder of files, then report.md, over the old ones."""
    target = out / REPORT_FOLDER
    old = None
    if target.exists() or target.is_symlink():
        old = out / f"{_OLD_PREFIX}{os.getpid()}"
        _remove(old)
        os.replace(target, old)  # a link is moved itself, never followed
    os.replace(staging / REPORT_FOLDER, target)
    os.replace(staging / REPORT_FILE, out / REPORT_FILE)
    if old is not None:
        _remove(old)


def _save(figure: Figure, path: Path) -> None:
    figure.savefig(path, dpi=110)


def _render(runs: list[Run], files: Path) -> str:
    """Write figures and CSVs into ``files``; return the markdown text."""
    several = len(runs) > 1
    link = REPORT_FOLDER
    lines: list[str] = []
    if several:
        lines += [f"# HAQ report: {' vs '.join(one_line(r.label) for r in runs)}", ""]
        best = tables.best_table(runs)
        best.to_csv(files / "runs.csv", index=False)
        lines += ["## Best policy of each run", "", _markdown_table(best), "",
                  f"Table: [{link}/runs.csv]({link}/runs.csv)", ""]
    else:
        lines += [f"# HAQ report: {one_line(runs[0].label)}", ""]

    for run in runs:
        suffix = f"-{_safe(run.label)}" if several else ""
        heading = "##" if not several else "###"
        if several:
            lines += [f"## {run.label}", ""]
        lines += _summary_lines(run)
        lines += [f"{heading} What to conclude", "", *[f"- {sentence}" for sentence in conclusions(run)], ""]
        front = tables.budget_front(run)
        if front is not None:
            front.to_csv(files / f"front{suffix}.csv", index=False)
            lines += [f"{heading} Best policy per budget", "",
                      "One budget-conditioned search; accuracy and cost ratio on the reward split as "
                      "searched, test accuracy after `haq-rl finetune RUN --budget B` where run, beside the "
                      "largest uniform policy within the budget after the same fine-tune. The sections "
                      f"below describe the loosest budget ({run.budget:g}).", "",
                      _markdown_table(front), "", f"Table: [{link}/front{suffix}.csv]({link}/front{suffix}.csv)",
                      ""]
        comparison = tables.comparison_table(run)
        lines += [f"{heading} Fine-tuned comparison", ""]
        if comparison is None:
            lines += [f"Not fine-tuned yet: run `haq-rl finetune {one_line(str(run.path))}` to add the float, uniform "
                      "and searched rows (accuracy on the test split after QAT).", ""]
        else:
            comparison.to_csv(files / f"comparison{suffix}.csv", index=False)
            shown = [c for c in (*tables.COMPARISON_COLUMNS, "mean_w_bits", "mean_a_bits") if c in comparison.columns
                     and c not in ("w_bits", "a_bits")]
            finetune = (run.metrics or {}).get("finetune") or {}
            detail = ", ".join(f"{k} {finetune[k]}" for k in ("epochs", "lr", "batch_size", "seed") if k in finetune)
            view = comparison[shown].copy()
            # Said in the row itself: a reader comparing float with the fine-tuned rows must know.
            view.loc[view["name"] == "float", "name"] = "float (pretrained, not fine-tuned)"
            lines += [f"Accuracy on the test split before and after fine-tuning{f' ({detail})' if detail else ''} "
                      "of every quantized row; the float row is the pretrained model, not fine-tuned. "
                      "Ratios are to uniform 8/8.", "", _markdown_table(view), ""]
            versus = (run.metrics or {}).get("searched_vs_uniform4")
            if isinstance(versus, dict) and versus:
                lines += ["Searched vs uniform 4/4: " + ", ".join(
                    f"{k.replace('_', ' ')} {v:.4g}" if isinstance(v, (int, float)) else f"{k.replace('_', ' ')} -"
                    for k, v in versus.items()) + ".", ""]
            lines += [f"Table: [{link}/comparison{suffix}.csv]({link}/comparison{suffix}.csv)", ""]
        measured = tables.end_to_end_table(run)
        if measured is not None:
            measured.to_csv(files / f"end_to_end{suffix}.csv", index=False)
            over = measured[measured["measured_within_budget"] == False]  # noqa: E712  (None: not a latency budget)
            flag = ([f"**Over the latency budget when measured:** {', '.join(over['name'])} (the table admitted "
                     "them; the whole model does not).", ""] if len(over) else [])
            lines += [f"{heading} Measured end to end", "",
                      "Each policy exported as `haq-rl export --runtime ort` writes it and timed whole in "
                      "onnxruntime on this CPU (1 thread, the table's batch), beside the float model and uniform "
                      "8/8: ratios to 8/8 as the table predicts them and as measured (median over rounds, low "
                      "and high round).", "", *flag, _markdown_table(measured), "",
                      f"Table: [{link}/end_to_end{suffix}.csv]({link}/end_to_end{suffix}.csv)", ""]
        table = tables.policy_table(run)
        table.to_csv(files / f"policy_table{suffix}.csv", index=False)
        objective = tables.OBJECTIVE_COLUMNS[run.objective]
        shown = ["layer", "kind", "w_bits", "a_bits", "macs"] + [
            c for c in (*cost_metrics(table, run.objective), objective) if c in table.columns][:2]
        shown = list(dict.fromkeys(shown + ["share", "share_8bit", "pinned"]))
        view = table[shown].copy()
        view["share"] = (100 * view["share"]).round(2)
        view["share_8bit"] = (100 * view["share_8bit"]).round(2)
        view = view.rename(columns={"share": f"{run.objective} share %",
                                    "share_8bit": f"{run.objective} share at 8/8 %",
                                    "pinned": "pinned at 8 bits"})
        pinned_note = (["Layers marked pinned are held at 8 bits by the env (`pin_first_last`), not chosen by "
                        "the search.", ""] if table["pinned"].any() else [])
        lines += [f"{heading} Best policy per layer", "", *pinned_note, _markdown_table(view), "",
                  f"Full table (every cost at the policy and at 8/8): "
                  f"[{link}/policy_table{suffix}.csv]({link}/policy_table{suffix}.csv)", ""]
        frame = tables.episodes(run)
        frame.to_csv(files / f"episodes{suffix}.csv", index=False)
        front = tables.kept_front(run)
        front.to_csv(files / f"pareto{suffix}.csv", index=False)
        if tables.finetuned_points(run) is not None:
            front_title = "Pareto front of the fine-tuned policies"
            front_text = ("What you can keep: the fine-tuned policies no other fine-tuned one beats at equal or "
                          "lower cost (test split, after fine-tuning).")
            base_cols = [c for c in ("name", "cost_ratio", "accuracy", "accuracy_before", "within_budget")
                         if c in front.columns]
        else:
            front_title = "Pareto front of the evaluated policies"
            front_text = "The evaluated policies no other beats at equal or lower cost (reward split, post-training)."
            base_cols = [c for c in (*BASE_COLUMNS, "mean_w_bits", "mean_a_bits") if c in front.columns]
        uniform = tables.uniform_baselines(run)
        uniform.to_csv(files / f"uniform{suffix}.csv", index=False)
        lines += [f"{heading} {front_title}", "", front_text, "",
                  _markdown_table(front[base_cols].drop(columns=["bits_lowered"], errors="ignore")), "",
                  f"{heading} Uniform baselines", "",
                  "Cost from the cost table; `accuracy` from episodes.csv where the search evaluated that exact "
                  "policy (reward split, post-training), `finetuned_accuracy` from metrics.json where "
                  "`haq-rl finetune` fine-tuned it (test split); `-` where neither measured it.", "",
                  _markdown_table(uniform), ""]

    figures: list[tuple[str, str, Callable[[list[Run]], Figure], str]] = [
        ("bits", "Bits per layer", plot_bits,
         "Weight and activation bits of the best policy; colour (or hatch when comparing) marks the layer kind."),
        ("cost_share", "Cost share per layer", plot_cost_share,
         "Each layer's share of the model's latency/energy (or the objective's cost) at the best policy and at 8/8."),
        ("curve", "Search curve", plot_curve,
         "Reward and accuracy of every episode; thick lines are the running best within budget. The best is the "
         "policy of highest reward, so with a KL reward its accuracy can fall while the reward rises."),
        ("pareto", "Accuracy vs cost", plot_pareto,
         "Every evaluated policy (reward split, post-training), the uniform baselines and the budget; once "
         "fine-tuned, the fine-tuned policies (test split) with their Pareto front, and the searched policy (star) "
         "where fine-tuning put it (hollow star: as searched). Before fine-tuning the front and the star are "
         "the search's own."),
    ]
    if any(run.front is not None for run in runs):
        figures.append(("front", "Best policy per budget", plot_front,
                        "The budget-conditioned search's best policy per budget (and, where fine-tuned, its test "
                        "accuracy beside the largest uniform policy within that budget)."))
    lines += ["## Figures", ""]
    for name, title, plot, caption in figures:
        figure = plot(runs)
        _save(figure, files / f"{name}.png")
        lines += [f"### {title}", "", caption, "", f"![{title}]({link}/{name}.png)", ""]
    return "\n".join(lines).rstrip() + "\n"


def _summary_lines(run: Run) -> list[str]:
    env, search = run.spec_fields, run.search
    meta = run.policy.metadata
    metrics = dict(meta.get("metrics") or {})
    label, own = fields_label(env)
    # A user's model is named by itself: the env id would name the env's own model.
    named = [("model", label), ("data and hardware settings of", env.get("id"))] if own else [("env", env.get("id"))]
    settings = pd.DataFrame([
        *named, ("model / dataset", f"{env.get('model')} / {env.get('dataset')} "
                                                    f"({env.get('input_size')} px)"),
        ("hardware profile", meta.get("profile", env.get("hardware"))),
        ("objective / budget", "; ".join(f"{name} <= {budget:g} x uniform 8/8" for name, budget in (
            (run.objective, run.budget), *(env.get("extra_budgets") or [])))),
        ("bits", f"{env.get('min_bits')}..{env.get('max_bits')}"
                 f"{', first/last pinned to 8' if env.get('pin_first_last') else ''}"),
        ("method / seed", f"{run.method} / {search.get('seed')}"),
        ("episodes", len(run.episodes)),
        ("float accuracy (reward split)", f"{run.float_accuracy:.2f}%"),
        ("best policy", f"episode {meta.get('episode', '?')}: accuracy {metrics.get('accuracy', math.nan):.2f}%, "
                        f"reward {metrics.get('reward', math.nan):.4f}, "
                        f"cost ratio {metrics.get('cost_ratio', math.nan):.4f}"
                        + "".join(f", {name} ratio {metrics[f'{name}_ratio']:.4f}"
                                  for name, _ in env.get("extra_budgets") or [] if f"{name}_ratio" in metrics)),
        ("best policy cost", ", ".join(f"{tables.COST_LABELS[c]} {format_number(float(metrics[c]))}" for c in tables.COST_COLUMNS
                                       if metrics.get(c) is not None and math.isfinite(float(metrics[c])))),
        ("mean bits (w / a)", f"{np.mean(run.policy.w_bits):.2f} / {np.mean(run.policy.a_bits):.2f}"),
        ("run directory", str(run.path)),
    ], columns=["setting", "value"])
    return [_markdown_table(settings), ""]
