"""Search quality: DDPG vs random (same number of evaluations) vs uniform, on the default env.

For every budget and seed, each method searches from scratch; the table reports the
best policy's reward-split accuracy (before fine-tuning) and cost ratio, as mean and
standard deviation over seeds, plus the agent's share of the DDPG wall time (everything
but policy evaluation and env construction).

    .venv/bin/python bench/bench_search.py --episodes 150 --seeds 0 1 2 --budgets 0.3 0.5 0.7 --jobs 2

With ``--jobs 2`` two searches share the two cores, so ``search_s`` is per search under
that load; the accuracies do not depend on ``--jobs`` (each search is seeded and runs
with one torch thread).
"""

from __future__ import annotations

import argparse
import multiprocessing
import shutil
import statistics
import sys
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import RESULTS, write_results  # noqa: E402

from haq_rl.env import DEFAULT_ENV_ID  # noqa: E402
from haq_rl.search import SearchConfig, run_search  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--env", default=DEFAULT_ENV_ID)
    parser.add_argument("--episodes", type=int, default=150)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--budgets", type=float, nargs="+", default=[0.3, 0.5, 0.7])
    parser.add_argument("--methods", nargs="+", default=["ddpg", "random", "uniform"])
    parser.add_argument("--threads", type=int, default=1, help="torch threads per search")
    parser.add_argument("--jobs", type=int, default=1,
                        help="searches run at once, each in its own process (at most one per core)")
    args = parser.parse_args()
    runs = [(budget, method, seed)
            for budget in args.budgets
            for method in args.methods
            for seed in (args.seeds if method != "uniform" else args.seeds[:1])]
    per_run: list[dict] = []
    # Spawned workers: a forked child would inherit this process's torch thread pool.
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=args.jobs, mp_context=context) as pool:
        futures = [pool.submit(_one_search, args.env, budget, method, seed, args.episodes, args.threads)
                   for budget, method, seed in runs]
        for future in as_completed(futures):
            per_run.append(future.result())
            print(per_run[-1], flush=True)
            per_run.sort(key=lambda r: (args.budgets.index(r["budget"]), args.methods.index(r["method"]), r["seed"]))
            # Written after every run so a long benchmark can be read while it runs.
            write_results("search_runs", per_run, "Search quality, one row per run", _command(args))
            _write_summary(per_run, args)


def _one_search(env: str, budget: float, method: str, seed: int, episodes: int, threads: int) -> dict:
    torch.set_num_threads(threads)
    out = RESULTS / "search_runs" / f"b{budget}-{method}-s{seed}"
    shutil.rmtree(out, ignore_errors=True)
    result = run_search(SearchConfig(
        env=env, method=method, episodes=episodes, budget=budget, seed=seed, out=str(out), progress=False))
    search_seconds = result.wall_time_s - result.setup_seconds
    return {
        "budget": budget, "method": method, "seed": seed,
        "best_accuracy": result.best_accuracy, "best_cost_ratio": result.best_cost_ratio,
        "evaluations": result.evaluations, "search_s": search_seconds,
        "agent_share": max(0.0, 1 - result.eval_seconds / search_seconds),
    }


def _write_summary(per_run: list[dict], args: argparse.Namespace) -> None:
    summary = []
    for budget in args.budgets:
        for method in args.methods:
            rows = [r for r in per_run if r["budget"] == budget and r["method"] == method]
            if not rows:
                continue
            accuracies = [r["best_accuracy"] for r in rows]
            summary.append({
                "budget": budget, "method": method, "seeds": len(rows),
                "accuracy_mean": statistics.mean(accuracies),
                "accuracy_std": statistics.stdev(accuracies) if len(accuracies) > 1 else 0.0,
                "cost_ratio_mean": statistics.mean(r["best_cost_ratio"] for r in rows),
                "agent_share_mean": statistics.mean(r["agent_share"] for r in rows),
                "search_s_mean": statistics.mean(r["search_s"] for r in rows),
            })
    path = write_results("search_quality", summary, "Search quality (reward-split accuracy before fine-tuning)",
                         _command(args))
    print(path.read_text())


def _command(args: argparse.Namespace) -> str:
    return (f"python bench/bench_search.py --episodes {args.episodes} --seeds {' '.join(map(str, args.seeds))} "
            f"--budgets {' '.join(map(str, args.budgets))} --jobs {args.jobs}")


if __name__ == "__main__":
    main()
