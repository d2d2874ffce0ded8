"""One budget-conditioned search against one search per budget, and the peers, after the same fine-tune.

For each seed, on the default env (MobileNetV2, BISMO edge latency):

* ``conditioned``: one guided search with ``--budgets`` (N x K episodes, one agent);
* ``separate``: K guided searches of N episodes, one per budget (HAQ's way);
* ``hawq``: the integer program re-solved at every budget (K evaluations);
* ``nsga2``: Optuna's NSGA-II over the same N x K evaluations, each trial walled at its
  scheduled budget;
* ``sdq``: the differentiable bit-width search trained once per budget (one evaluation each);
* ``uniform``: the largest uniform policy within each budget (no search; seed-independent).

Every policy gets the same fine-tune (``haq-rl finetune``'s default: 1 epoch of LSQ QAT, Adam lr 3e-4,
fine-tune seed 0) and is measured on the test split, before (post-training) and after.
The conditioned run's actor also serves budgets it never trained (``--unseen``), next to
the integer program solved there, and the best policy its evaluations already hold
within that budget. Rows per seed, then mean +- std over seeds.

    .venv/bin/python bench/bench_budgets.py --seeds 0 1 2 --jobs 2
    .venv/bin/python bench/bench_budgets.py --methods conditioned separate hawq uniform   # a subset
"""

from __future__ import annotations

import argparse
import multiprocessing
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import RESULTS, write_results  # noqa: E402

from haq_rl.fileio import read_json, write_json_atomic  # noqa: E402
from haq_rl.finetune import FinetuneConfig, finetune_run  # noqa: E402
from haq_rl.run.layout import BEST_POLICY_FILE, METRICS_FILE  # noqa: E402
from haq_rl.search import SearchConfig, budget_policy, run_search  # noqa: E402
from haq_rl.task.spec import DEFAULT_ENV_ID  # noqa: E402

BUDGETS = (0.35, 0.45, 0.55, 0.65)
METHODS = ("conditioned", "separate", "hawq", "nsga2", "sdq", "uniform")
#: Methods that search each budget on its own: (episodes per search, ``--method``).
PER_BUDGET = {"separate": (None, "guided"), "sdq": (1, "sdq")}
UNSEEN = (0.4, 0.5, 0.6)
SUMMARY_FILE = "bench_search.json"  # evaluations and wall time of a finished search


def _search(run_dir: str, **settings: Any) -> dict[str, Any]:
    """Run a search unless it finished before; returns its evaluations and wall time."""
    torch.set_num_threads(1)
    summary = Path(run_dir) / SUMMARY_FILE
    if summary.is_file():
        return read_json(summary)
    started = time.perf_counter()
    result = run_search(SearchConfig(out=run_dir, progress=False, **settings))
    record = {"evaluations": result.evaluations, "episodes": result.episodes,
              "wall_time_s": time.perf_counter() - started}
    write_json_atomic(summary, record)
    return record


def _finetune(policy_path: str) -> dict[str, Any]:
    """The same fine-tune for every policy (``compare=False``: the uniform rows are their own runs)."""
    torch.set_num_threads(1)
    metrics_path = Path(policy_path).parent / METRICS_FILE
    if not metrics_path.is_file():
        finetune_run(policy_path, FinetuneConfig(compare=False), progress=False)
    row = next(r for r in read_json(metrics_path)["rows"] if r["name"] == "searched")
    return {"accuracy_before": row["accuracy_before"], "accuracy": row["accuracy"], "cost_ratio": row["cost_ratio"],
            "within_budget": row["within_budget"], "mean_w_bits": sum(row["w_bits"]) / len(row["w_bits"]),
            "mean_a_bits": sum(row["a_bits"]) / len(row["a_bits"])}


def _policy(run_dir: Path, budget: float | None) -> str:
    return str(budget_policy(run_dir, budget) if budget is not None else run_dir / BEST_POLICY_FILE)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--env", default=DEFAULT_ENV_ID)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--budgets", type=float, nargs="+", default=list(BUDGETS))
    parser.add_argument("--unseen", type=float, nargs="*", default=list(UNSEEN))
    parser.add_argument("--episodes-per-budget", type=int, default=20)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--name", default="budgets")
    parser.add_argument("--methods", nargs="+", choices=METHODS, default=list(METHODS),
                        help="which of the methods to run (the unseen-budget rows need conditioned and hawq)")
    args = parser.parse_args()
    budgets, per_budget = tuple(args.budgets), args.episodes_per_budget
    root = RESULTS / f"{args.name}_runs"
    command = "python bench/bench_budgets.py " + " ".join(sys.argv[1:])

    # 1. Searches: (method, seed) -> list of (budget or None, run directory), each a job.
    searches: dict[tuple[str, int], list[tuple[float | None, Path]]] = {}
    jobs: list[tuple[tuple[str, int], str, dict[str, Any]]] = []
    for seed in args.seeds:
        for method in [m for m in ("conditioned", "hawq", "nsga2") if m in args.methods]:
            run_dir = root / f"{method}-s{seed}"
            searches[(method, seed)] = [(b, run_dir) for b in budgets]
            episodes = len(budgets) if method == "hawq" else per_budget * len(budgets)
            jobs.append(((method, seed), str(run_dir), dict(
                env=args.env, method="guided" if method == "conditioned" else method, budgets=budgets,
                episodes=episodes, seed=seed)))
        for method in [m for m in PER_BUDGET if m in args.methods]:
            episodes, search_method = PER_BUDGET[method]
            for budget in budgets:
                run_dir = root / f"{method}-b{budget:g}-s{seed}"
                searches.setdefault((method, seed), []).append((None, run_dir))
                jobs.append(((method, seed), str(run_dir), dict(env=args.env, method=search_method, budget=budget,
                                                                episodes=episodes or per_budget, seed=seed)))
    for budget in budgets if "uniform" in args.methods else ():  # the largest uniform: no seed
        run_dir = root / f"uniform-b{budget:g}"
        searches.setdefault(("uniform", 0), []).append((None, run_dir))
        jobs.append((("uniform", 0), str(run_dir), dict(env=args.env, method="uniform", budget=budget, episodes=1)))
    context = multiprocessing.get_context("spawn")
    cost: dict[tuple[str, int], dict[str, float]] = {}
    with ProcessPoolExecutor(args.jobs, mp_context=context) as pool:
        futures = [(key, pool.submit(_search, run_dir, **settings)) for key, run_dir, settings in jobs]
        for key, future in futures:
            record = future.result()
            total = cost.setdefault(key, {"evaluations": 0, "wall_time_s": 0.0})
            total["evaluations"] += record["evaluations"]
            total["wall_time_s"] += record["wall_time_s"]

        # 2. The same fine-tune of every budget's policy, and the actor at unseen budgets.
        tuned: list[tuple[dict[str, Any], Any]] = []
        for (method, seed), runs in searches.items():
            for budget, (listed, run_dir) in zip(budgets, runs, strict=True):
                path = _policy(run_dir, listed)
                tuned.append(({"seed": seed if method != "uniform" else "-", "budget": budget, "method": method,
                               **cost[(method, seed)]}, pool.submit(_finetune, path)))
        unseen = args.unseen if {"conditioned", "hawq"} <= set(args.methods) else []
        for seed in args.seeds:
            for budget in unseen:
                actor = _policy(root / f"conditioned-s{seed}", budget)
                tuned.append(({"seed": seed, "budget": budget, "method": "conditioned actor (unseen)"},
                              pool.submit(_finetune, actor)))
                hawq_dir = root / f"hawq-b{budget:g}-s{seed}"
                _search(str(hawq_dir), env=args.env, method="hawq", budget=budget, episodes=1, seed=seed)
                tuned.append(({"seed": seed, "budget": budget, "method": "hawq (unseen)"},
                              pool.submit(_finetune, str(hawq_dir / BEST_POLICY_FILE))))
        rows = [{**meta, **future.result()} for meta, future in tuned]
    for row in rows:  # the unseen-budget rows have no search of their own
        row.setdefault("evaluations", None)
        row.setdefault("wall_time_s", None)
    write_results(f"{args.name}_per_seed", rows, f"{args.env}: every budget, method and seed; test accuracy "
                  "before and after the same fine-tune", command)

    summary = []
    for budget in sorted({row["budget"] for row in rows}):
        for method in dict.fromkeys(row["method"] for row in rows):
            mine = [row for row in rows if row["budget"] == budget and row["method"] == method]
            if not mine:
                continue
            after = [row["accuracy"] for row in mine]
            before = [row["accuracy_before"] for row in mine]
            evaluations = [row["evaluations"] for row in mine if row["evaluations"] is not None]
            seconds = [row["wall_time_s"] for row in mine if row["wall_time_s"] is not None]
            summary.append({
                "budget": budget, "method": method,
                "cost_ratio": statistics.mean(row["cost_ratio"] for row in mine),
                "before_mean": statistics.mean(before),
                "after_mean": statistics.mean(after),
                "after_std": statistics.stdev(after) if len(after) > 1 else 0.0,
                "after_per_seed": " / ".join(f"{value:.2f}" for value in after),
                "evaluations": statistics.mean(evaluations) if evaluations else "-",
                "search_s": statistics.mean(seconds) if seconds else "-",
            })
    path = write_results(args.name, summary, f"{args.env}: mean +- std over seeds {args.seeds} "
                         f"(budgets {', '.join(f'{b:g}' for b in budgets)}, {per_budget} episodes per budget)", command)
    print(path.read_text())


if __name__ == "__main__":
    main()
