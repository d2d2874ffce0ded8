"""The episode recorder: end-of-episode infos to episodes.csv rows, the best policy per budget.

One Recorder per search, whatever the method: it appends each evaluated policy's row,
tracks the best policy within every budget and writes it (best_policy.json, or one per
budget and front.csv in a conditioned run) as soon as it improves, so a killed search
leaves its best-so-far on disk. A resumed search rebuilds it from the rows on disk.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from haq_rl import __version__
from haq_rl.fileio import finite_or_none, write_text_atomic
from haq_rl.run.episodes import EpisodeLog, episode_columns
from haq_rl.run.layout import BEST_POLICY_FILE, EPISODES_FILE, FRONT_FILE, budget_policy_path
from haq_rl.task.label import is_own_model, model_label, weights_file_sha256
from haq_rl.task.spec import TaskSpec

if TYPE_CHECKING:
    from haq_rl.search.config import SearchConfig
    from haq_rl.task.scoring import PolicyScorer


#: The metrics a Recorder keeps of a best policy (and writes into its policy JSON).
_BEST_KEYS = ("reward", "accuracy", "cost_ratio", "latency_ms", "energy_uj", "size_bytes", "bops")


class Recorder:
    """Turns end-of-episode infos into episodes.csv rows and tracks the best policy.

    A conditioned run (``spec.budgets``) tracks the best policy of every budget: a policy
    counts for every listed budget it meets, whichever budget its episode ran under, so one
    evaluation serves all of them. Its rows carry the episode's ``budget``; rows of a run
    with extra budgets carry ``ratio:<objective>`` for each.
    """

    def __init__(self, run_dir: Path, scorer: PolicyScorer, spec: TaskSpec, config: SearchConfig,
                 progress: Callable[[dict[str, Any]], None] | None = None) -> None:
        self.run_dir = run_dir
        self.scorer = scorer
        self.spec = spec
        self.config = config
        self.budgets: tuple[float, ...] = spec.budgets or (scorer.budget_ratio,)
        self.conditioned = bool(spec.budgets)
        extra = (["budget"] if self.conditioned else []) + [f"ratio:{name}" for name in scorer.extra_budgets]
        self.log = EpisodeLog(run_dir / EPISODES_FILE, episode_columns(scorer.layer_names, extra))
        self.best_by_budget: dict[float, dict[str, Any]] = {}
        self.count = 0
        self.progress = progress
        self.reset_from_log()

    @property
    def best(self) -> dict[str, Any] | None:
        """The best policy within the (loosest) budget, or None."""
        return self.best_by_budget.get(self.budgets[-1])

    def reset_from_log(self) -> None:
        """Restore the count and the best policies from the rows on disk (resumed runs)."""
        self.count = 0
        self.best_by_budget = {}
        for row in self.log.read_rows():
            self._consider(row_to_info(row, self.scorer.layer_names))
            self.count += 1
        # The policy files may describe a row that a resume just dropped: rewrite them.
        for budget in self.budgets:
            if budget in self.best_by_budget:
                self._write_best(budget)
            else:
                self.policy_path(budget).unlink(missing_ok=True)
        if self.conditioned:
            self._write_front()

    def record(self, info: dict[str, Any], phase: str) -> list[float]:
        """Append the episode's row; returns the budgets whose best policy it became."""
        row = {
            "episode": self.count, "phase": phase, **{c: info.get(c) for c in (
                "reward", "accuracy", "cost_ratio", "latency_ms", "energy_uj", "size_bytes",
                "bops", "bits_lowered")},
        }
        if self.conditioned:
            row["budget"] = info["budget_ratio"]
        for name, ratio in info.get("cost_ratios", {}).items():
            if name in self.scorer.extra_budgets:
                row[f"ratio:{name}"] = ratio
        for name, w, a in zip(self.scorer.layer_names, info["w_bits"], info["a_bits"], strict=True):
            row[f"w:{name}"] = int(w)
            row[f"a:{name}"] = int(a)
        self.log.append(row)
        improved = self._consider(info)
        for budget in improved:
            self._write_best(budget)
        if improved and self.conditioned:
            self._write_front()
        self.count += 1
        if self.progress is not None:
            self.progress({**(self.best or {}), "episode": self.count})
        return improved

    def _consider(self, info: dict[str, Any]) -> list[float]:
        improved = []
        for budget in self.budgets:
            if not self.scorer.is_within(info["cost_ratio"], info.get("cost_ratios"), budget=budget):
                continue
            best = self.best_by_budget.get(budget)
            if best is None or info["reward"] > best["reward"]:
                kept = {k: info[k] for k in (*_BEST_KEYS, "w_bits", "a_bits")}
                kept["episode"] = self.count
                if "cost_ratios" in info:
                    kept["cost_ratios"] = dict(info["cost_ratios"])
                self.best_by_budget[budget] = kept
                improved.append(budget)
        return improved

    def policy_path(self, budget: float) -> Path:
        return budget_policy_path(self.run_dir, budget) if self.conditioned else self.run_dir / BEST_POLICY_FILE

    def _write_best(self, budget: float) -> None:
        best = self.best_by_budget[budget]
        path = self.policy_path(budget)
        path.parent.mkdir(parents=True, exist_ok=True)
        write_policy_json(path, self.scorer, self.spec, best, budget=budget, method=self.config.method,
                          seed=self.config.seed)

    def _write_front(self) -> None:
        """front.csv: one row per budget with its best policy so far (the accuracy-cost front)."""
        import pandas as pd

        rows = [{"budget": budget, "episode": best["episode"],
                 **{key: finite_or_none(best[key]) for key in _BEST_KEYS},
                 "mean_w_bits": float(np.mean(best["w_bits"])), "mean_a_bits": float(np.mean(best["a_bits"]))}
                for budget, best in sorted(self.best_by_budget.items())]
        write_text_atomic(self.run_dir / FRONT_FILE, pd.DataFrame(rows).to_csv(index=False))


def write_policy_json(path: Path, scorer: PolicyScorer, spec: TaskSpec, best: dict[str, Any], *,
                      budget: float, method: str, seed: int) -> None:
    """A best policy's JSON with the metadata finetune, evaluate, export and the report read."""
    from haq_rl.quant import QuantPolicy

    policy = QuantPolicy.from_arrays(scorer.layer_names, best["w_bits"], best["a_bits"])
    table = scorer.cost_table
    metrics = {k: finite_or_none(best[k]) for k in _BEST_KEYS}
    extra: dict[str, Any] = {}
    if is_own_model(spec):  # what the policy belongs to, for people: nothing imports from it
        extra["label"] = model_label(spec)
        extra["weights_sha256"] = weights_file_sha256(spec.weights)
    if spec.extra_budgets:  # several constraints: each budget and each ratio
        extra["extra_budgets"] = dict(spec.extra_budgets)
        metrics.update({f"{name}_ratio": finite_or_none(ratio) for name, ratio in best["cost_ratios"].items()})
    policy.to_json(
        path,
        model=spec.model, dataset=spec.dataset, input_size=spec.input_size,
        env_id=spec.id, profile=getattr(table, "profile_name", spec.hardware),
        profile_sha256=getattr(table, "profile_sha256", None), objective=spec.objective,
        budget=budget, **extra, method=method, seed=seed,
        metrics=metrics, float_accuracy=scorer.evaluator.float_accuracy,
        episode=None if best.get("episode") is None else int(best["episode"]),
        haq_rl_version=__version__,
    )


def row_to_info(row: dict[str, str], layer_names: list[str]) -> dict[str, Any]:
    info: dict[str, Any] = {k: float(row[k]) if row.get(k) not in (None, "") else float("nan")
                            for k in _BEST_KEYS}
    info["w_bits"] = np.array([int(row[f"w:{n}"]) for n in layer_names])
    info["a_bits"] = np.array([int(row[f"a:{n}"]) for n in layer_names])
    ratios = {key.split(":", 1)[1]: float(value) for key, value in row.items() if key.startswith("ratio:")}
    if ratios:
        info["cost_ratios"] = ratios
    return info
