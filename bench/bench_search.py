"""Search quality: every method in the same harness, judged before and after the same fine-tune.

For every budget and seed, each method searches from scratch through the same env (same
evaluator, action wall and cost table; ``--set`` changes it for every method alike),
then its best policy gets the standard ``haq-rl finetune`` (1 epoch of LSQ QAT, Adam lr 3e-4, seed 0,
``compare=False``) and is measured on the test split. Deterministic methods (uniform,
greedy) run once per budget. The tables report the best policy's reward-split accuracy
(before fine-tuning) and its test accuracy after fine-tuning, as mean and standard
deviation over seeds and per seed.

    .venv/bin/python bench/bench_search.py --episodes 80 --seeds 0 1 2 3 4 --budgets 0.3 0.5 0.7 \\
        --methods guided hawq tpe sdq ddpg random uniform greedy --jobs 2

With ``--jobs 2`` two searches share the two cores, so ``search_s`` is per search under
that load; the accuracies do not depend on ``--jobs`` (each search is seeded and runs
with one torch thread). ``--name`` picks the result files (``results/<name>_runs.*``,
``results/<name>.*``) so that several configurations can be kept side by side.

Paired comparison (``results/<name>_paired.*``): each run keeps its fine-tuned model's
per-image correctness on the test split (``correct.npy`` in its run directory); the first
method of ``--methods`` is compared with each other one on the same images and seeds:
the mean difference in points with a 95 % bootstrap interval (images and seeds resampled
together, 2,000 draws). A win counts only where the interval excludes zero, a tie where it
holds zero (per seed and over all seeds).
"""

from __future__ import annotations

import argparse
import multiprocessing
import shutil
import statistics
import sys
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import RESULTS, write_results  # noqa: E402

from haq_rl.commands._common import parse_key_values  # noqa: E402
from haq_rl.finetune import FinetuneConfig, finetune_run  # noqa: E402
from haq_rl.search import SearchConfig, run_search  # noqa: E402
from haq_rl.task.spec import DEFAULT_ENV_ID  # noqa: E402

#: Methods whose result does not depend on the seed: one run per budget.
DETERMINISTIC = ("uniform", "greedy")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--env", default=DEFAULT_ENV_ID)
    parser.add_argument("--episodes", type=int, default=80)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--budgets", type=float, nargs="+", default=[0.3, 0.5, 0.7])
    parser.add_argument("--methods", nargs="+", default=["guided", "hawq", "hawq:activations=separate", "tpe",
                                                         "sdq", "ddpg", "random", "uniform", "greedy"],
                        help="methods, optionally with options: NAME[:KEY=VALUE,...]")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="env spec override for every method (e.g. bn_recalibration=2)")
    parser.add_argument("--finetune-epochs", type=int, default=1)
    parser.add_argument("--no-finetune", action="store_true", help="skip the fine-tune of the best policies")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per search")
    parser.add_argument("--jobs", type=int, default=1,
                        help="searches run at once, each in its own process (at most one per core)")
    parser.add_argument("--name", default="search_quality", help="result file name")
    parser.add_argument("--summarize", action="store_true",
                        help="only rewrite the summary tables from results/<name>_runs.csv")
    parser.add_argument("--merge", nargs="+", default=[], metavar="NAME",
                        help="with --summarize: the runs of these earlier benches (results/NAME_runs.csv and "
                             "their correct.npy files), a later NAME's run of the same budget, method and seed "
                             "replacing an earlier one; summarised under --name")
    args = parser.parse_args()
    if args.summarize:
        _write_summary(_merged_runs(args) if args.merge else _read_runs(RESULTS / f"{args.name}_runs.csv"), args)
        return
    overrides = parse_key_values(args.set, "--set")
    # Seed-major order: a benchmark stopped early has whole seeds, every budget and method.
    runs = [(budget, method, seed)
            for seed in args.seeds
            for budget in args.budgets
            for method in args.methods
            if _parse_method(method)[0] not in DETERMINISTIC or seed == args.seeds[0]]
    per_run: list[dict] = []
    # Spawned workers: a forked child would inherit this process's torch thread pool.
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=args.jobs, mp_context=context) as pool:
        futures = [pool.submit(_one_search, args, overrides, budget, method, seed) for budget, method, seed in runs]
        for future in as_completed(futures):
            per_run.append(future.result())
            print(per_run[-1], flush=True)
            per_run.sort(key=lambda r: (args.budgets.index(r["budget"]), args.methods.index(r["method"]), r["seed"]))
            # Written after every run so a long benchmark can be read while it runs.
            write_results(f"{args.name}_runs", per_run, "Search quality, one row per run", _command(args))
            _write_summary(per_run, args)


def _one_search(args: argparse.Namespace, overrides: dict[str, Any], budget: float, method: str,
                seed: int) -> dict:
    torch.set_num_threads(args.threads)
    out = RESULTS / f"{args.name}_runs" / _run_name(budget, method, seed)
    shutil.rmtree(out, ignore_errors=True)
    name, options = _parse_method(method)
    result = run_search(SearchConfig(
        env=args.env, method=name, episodes=args.episodes, budget=budget, seed=seed, out=str(out),
        progress=False, env_overrides=overrides, options=options))
    search_seconds = result.wall_time_s - result.setup_seconds
    row = {
        "budget": budget, "method": method, "seed": seed,
        "best_accuracy": result.best_accuracy, "best_reward": result.best["reward"],
        "best_cost_ratio": result.best_cost_ratio, "evaluations": result.evaluations,
        "search_s": search_seconds,
    }
    if not args.no_finetune:
        metrics = finetune_run(out, FinetuneConfig(epochs=args.finetune_epochs, compare=False), progress=False)
        searched = next(r for r in metrics["rows"] if r["name"] == "searched")
        float_row = next(r for r in metrics["rows"] if r["name"] == "float")
        row.update(test_before=searched["accuracy_before"], finetuned_test=searched["accuracy"],
                   float_test=float_row["accuracy"])
        np.save(out / "correct.npy", _test_correctness(out))
    return row


def _test_correctness(run_dir: Path) -> np.ndarray:
    """Per test image, whether the run's fine-tuned model classifies it correctly (bool)."""
    from haq_rl.finetune import load_finetuned, load_quantized_model
    from haq_rl.finetune.qat import test_loader
    from haq_rl.quant.outputs import logits_of
    from haq_rl.task import load_task
    from haq_rl.task.spec import TaskSpec

    payload = load_finetuned(run_dir / "finetuned.pt")
    task = load_task(TaskSpec.from_dict(payload["meta"]["env"]))
    model = load_quantized_model(task, payload)
    hits = []
    with torch.no_grad():
        for inputs, labels in test_loader(task):
            hits.append((logits_of(model(inputs)).argmax(1) == labels).numpy())
    return np.concatenate(hits)


def _paired(per_run: list[dict], args: argparse.Namespace) -> list[dict]:
    """The first method minus each other one, same images and seeds, with bootstrap intervals."""
    reference = args.methods[0]
    rng = np.random.default_rng(0)
    rows = []
    for budget in args.budgets:
        for method in args.methods[1:]:
            diffs = []
            for seed in args.seeds:
                ours, theirs = (_correct(args, per_run, budget, m, seed) for m in (reference, method))
                if ours is None or theirs is None:
                    continue
                diffs.append(100.0 * (ours.astype(float) - theirs.astype(float)))
            if not diffs:
                continue
            table = np.stack(diffs)  # [seeds, images]
            per_seed = [_interval(row[None], rng) for row in table]
            mean, low, high = _interval(table, rng)
            rows.append({"budget": budget, "ours": reference, "peer": method, "seeds": len(diffs),
                         "diff_mean": mean, "ci_low": low, "ci_high": high,
                         "verdict": "win" if low > 0 else ("loss" if high < 0 else "tie"),
                         "per_seed": " / ".join(f"{m:+.1f} [{lo:+.1f}, {hi:+.1f}]" for m, lo, hi in per_seed),
                         "wins_ties_losses": _tally(per_seed)})
    return rows


def _tally(per_seed: list[tuple[float, float, float]]) -> str:
    wins = sum(1 for _, low, _ in per_seed if low > 0)
    losses = sum(1 for _, _, high in per_seed if high < 0)
    return f"{wins}/{len(per_seed) - wins - losses}/{losses}"


def _interval(diffs: np.ndarray, rng: np.random.Generator, draws: int = 2000) -> tuple[float, float, float]:
    """Mean of ``diffs [seeds, images]`` and its 95 % bootstrap interval (seeds and images resampled)."""
    seeds, images = diffs.shape
    means = np.empty(draws)
    for i in range(draws):
        rows = diffs[rng.integers(0, seeds, seeds)]
        means[i] = rows[:, rng.integers(0, images, images)].mean()
    return float(diffs.mean()), float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))


def _correct(args: argparse.Namespace, per_run: list[dict], budget: float, method: str,
             seed: int) -> np.ndarray | None:
    if _parse_method(method)[0] in DETERMINISTIC:
        seed = args.seeds[0]
    # A merged run (--merge) lives in its own bench's folder, named in its row.
    bench = next((r.get("bench", args.name) for r in per_run
                  if (r["budget"], r["method"], r["seed"]) == (budget, method, seed)), args.name)
    path = RESULTS / f"{bench}_runs" / _run_name(budget, method, seed) / "correct.npy"
    return np.load(path) if path.is_file() else None


def _merged_runs(args: argparse.Namespace) -> list[dict]:
    """The requested budgets, methods and seeds of every ``--merge`` bench, later names
    winning; each row names the bench it came from (``bench``)."""
    runs: dict[tuple[float, str, int], dict] = {}
    for name in args.merge:
        for row in _read_runs(RESULTS / f"{name}_runs.csv"):
            if row["budget"] in args.budgets and row["method"] in args.methods and row["seed"] in args.seeds:
                runs[(row["budget"], row["method"], row["seed"])] = {**row, "bench": name}
    return sorted(runs.values(), key=lambda r: (r["budget"], r["seed"], args.methods.index(r["method"])))


def _run_name(budget: float, method: str, seed: int) -> str:
    return f"b{budget}-{method.replace(':', '-').replace('=', '-')}-s{seed}"


def _parse_method(text: str) -> tuple[str, dict[str, Any]]:
    """``hawq:activations=separate`` -> ("hawq", {"activations": "separate"}): a method with options."""
    name, _, options = text.partition(":")
    return name, parse_key_values([item for item in options.split(",") if item], "--methods")


def _stats(values: list[float]) -> tuple[float, float, str]:
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return statistics.mean(values), std, " / ".join(f"{v:.1f}" for v in values)


def _read_runs(path: Path) -> list[dict]:
    import csv

    def number(value: str) -> Any:
        try:
            return int(value)
        except ValueError:
            try:
                return float(value)
            except ValueError:
                return value

    with open(path, newline="") as stream:
        return [{k: number(v) for k, v in row.items()} for row in csv.DictReader(stream)]


def _fidelity(per_run: list[dict], budgets: list[float]) -> list[dict]:
    """Within-budget Spearman of the best policies' search reward vs their fine-tuned test accuracy."""
    from scipy.stats import spearmanr

    rows = []
    for budget in budgets:
        group = [r for r in per_run if r["budget"] == budget and "finetuned_test" in r]
        if len(group) < 3:
            continue
        value = spearmanr([r["best_reward"] for r in group], [r["finetuned_test"] for r in group]).statistic
        rows.append({"budget": budget, "policies": len(group), "methods": len({r["method"] for r in group}),
                     "spearman_reward_vs_finetuned": float(value)})
    return rows


def _reference_scores(per_run: list[dict]) -> list[dict]:
    """Per budget, every method's mean final reward and fine-tuned test accuracy, normalised.

    The normalised score ``(x - random) / (best - random)``, with ``random`` the random
    search's mean and ``best`` the best run of any method and seed ("best found", score 1),
    lets RL papers that reuse an env report comparable numbers. Written only when
    ``random`` ran.
    """
    rows = []
    for budget in sorted({r["budget"] for r in per_run}):
        runs = [r for r in per_run if r["budget"] == budget]
        methods = sorted({r["method"] for r in runs}, key=[r["method"] for r in runs].index)
        if "random" not in methods:
            continue
        tuned = all("finetuned_test" in r for r in runs)
        columns = [("best_reward", "final_reward", "reward_score")]
        if tuned:
            columns.append(("finetuned_test", "finetuned_test", "accuracy_score"))
        means = {key: {m: statistics.mean(r[key] for r in runs if r["method"] == m) for m in methods}
                 for key, _, _ in columns}
        best = {key: max(r[key] for r in runs) for key, _, _ in columns}
        for m in [*methods, "best found"]:
            row: dict[str, Any] = {"budget": budget, "method": m,
                                   "seeds": sum(1 for r in runs if r["method"] == m) if m in methods else ""}
            for key, name, score in columns:
                value = best[key] if m == "best found" else means[key][m]
                floor = means[key]["random"]
                row[name] = value
                row[score] = 0.0 if best[key] <= floor else (value - floor) / (best[key] - floor)
            rows.append(row)
    return rows


def _write_summary(per_run: list[dict], args: argparse.Namespace) -> None:
    summary = []
    for budget in args.budgets:
        for method in args.methods:
            rows = [r for r in per_run if r["budget"] == budget and r["method"] == method]
            if not rows:
                continue
            entry: dict[str, Any] = {"budget": budget, "method": method, "seeds": len(rows)}
            entry["before_mean"], entry["before_std"], entry["before_per_seed"] = _stats(
                [r["best_accuracy"] for r in rows])
            if "finetuned_test" in rows[0]:
                entry["after_mean"], entry["after_std"], entry["after_per_seed"] = _stats(
                    [r["finetuned_test"] for r in rows])
            entry["cost_ratio_mean"] = statistics.mean(r["best_cost_ratio"] for r in rows)
            entry["search_s_mean"] = statistics.mean(r["search_s"] for r in rows)
            summary.append(entry)
    path = write_results(args.name, summary, "Search quality: reward-split accuracy before fine-tuning, "
                         "test accuracy after the same fine-tune", _command(args))
    paired = _paired(per_run, args)
    if paired:
        write_results(f"{args.name}_paired", paired, f"Paired test-image differences, {args.methods[0]} minus each "
                      "peer (points; 95 % bootstrap interval over images and seeds)", _command(args))
    scores = _reference_scores(per_run)
    if scores:
        write_results(f"{args.name}_scores", scores, "Reference scores: each method's final reward and fine-tuned "
                      "test accuracy, normalised as (x - random) / (best - random)", _command(args))
    fidelity = _fidelity(per_run, args.budgets)
    if fidelity:
        write_results(f"{args.name}_fidelity", fidelity, "Reward fidelity among the best policies of every "
                      "method and seed (within budget)", _command(args))
    print(path.read_text())


def _command(args: argparse.Namespace) -> str:
    sets = "".join(f" --set {item}" for item in args.set)
    env = f" --env {args.env}" if args.env != DEFAULT_ENV_ID else ""
    return (f"python bench/bench_search.py{env} --episodes {args.episodes} --seeds {' '.join(map(str, args.seeds))} "
            f"--budgets {' '.join(map(str, args.budgets))} --methods {' '.join(args.methods)}{sets} "
            f"--jobs {args.jobs} --name {args.name}"
            + (f" (--summarize --merge {' '.join(args.merge)}: the runs of those benches)" if args.merge else ""))


if __name__ == "__main__":
    main()
