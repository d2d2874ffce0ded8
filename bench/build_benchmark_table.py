"""Build the tabulated benchmark shipped in ``haq_rl/resources/benchmark/`` (docs/leaderboard.md).

One command rebuilds everything the instant envs read (on an idle 2-core machine about an
hour for the defaults; it resumes from its work file when stopped):

    OMP_NUM_THREADS=1 .venv/bin/python bench/build_benchmark_table.py

Phases, each saved to the work file as it goes (``--work``):

1. ``table``: walled random policies of the supernet task, scored on its supernet (reward
   split: KL from the float model and accuracy). The first 200 are exactly the predictor's
   samples (:func:`haq_rl.supernet.predictor.sample_policies`, seed 0, one random stream),
   then the 49 uniform ``w/a`` policies, then more random policies until ``--policies`` or
   the table deadline.
2. ``sample``: a stratified sample (cost-ratio bins x reward ranks over the rows present
   when it is drawn, interleaved so any prefix is stratified; saved in its own work file,
   ``--sample-work``, so it can run beside a growing ``table`` phase) started from the
   supernet at the policy and measured on the test split: retraining-free, then after the
   standard 1-epoch fine-tune (``haq-rl finetune``'s defaults), one policy at a time in
   sample order until the deadline. A larger ``--sample`` later extends the draw.
3. ``ship``: the table and the predictor's samples written as compressed ``.npz`` (no
   pickle) with their SHA-256 in ``manifest.json`` (:mod:`haq_rl.supernet.tabulated`), and
   the sample's ranking (Spearman of the tabulated reward against the fine-tuned and the
   retraining-free test accuracy) as ``benchmark_table_sample.csv`` / ``.md``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

WORK_KEYS = ("w_bits", "a_bits", "kl", "accuracy", "origin")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--env", default="haq_rl/MobileNetV2Edge-v2", help="the supernet task tabulated")
    parser.add_argument("--policies", type=int, default=3000, help="table rows wanted")
    parser.add_argument("--table-minutes", type=float, default=40.0, help="stop adding rows after this")
    parser.add_argument("--sample", type=int, default=60, help="stratified sample size")
    parser.add_argument("--finetune-minutes", type=float, default=20.0, help="1-epoch fine-tunes until this")
    parser.add_argument("--work", type=Path, default=Path("bench/results/benchmark_table_work.npz"))
    parser.add_argument("--sample-work", type=Path, default=Path("bench/results/benchmark_sample_work.npz"))
    parser.add_argument("--table-name", default="mobilenetv2edgetabulated-v1",
                        help="the shipped file's name (an id's reward_options table=NAME pins it)")
    parser.add_argument("--phases", nargs="+", default=["table", "sample", "ship"],
                        choices=["table", "sample", "ship"])
    args = parser.parse_args()

    from haq_rl.task import load_task
    from haq_rl.task.scoring import scorer_for_task

    task = load_task(args.env)
    if task.spec.reward_source != "supernet":
        parser.error(f"--env {args.env} has reward_source {task.spec.reward_source!r}; a supernet task is needed")
    work = _load_work(args.work)
    work["sample"] = _load_sample(args.sample_work)
    if "table" in args.phases:
        scorer = scorer_for_task(task)
        _table(scorer, work, args)
    if "sample" in args.phases:
        _sample(task, work, args)
    if "ship" in args.phases:
        from haq_rl.supernet.tabulated import ship_table

        command = " ".join(["python bench/build_benchmark_table.py", *sys.argv[1:]])
        print(ship_table(args.env, task, work, command=command, name=args.table_name))
        print(_write_sample_report(task, work, command=command))


def _load_work(path: Path) -> dict[str, Any]:
    """The table's rows so far (``sample`` is kept apart, :func:`_load_sample`)."""
    if not path.is_file():
        return {key: [] for key in WORK_KEYS}
    with np.load(path, allow_pickle=False) as data:
        return {key: list(data[key]) for key in WORK_KEYS}


def _load_sample(path: Path) -> dict[int, list[float]]:
    """Sampled row -> [retraining-free, fine-tuned] test accuracy (NaN: not measured), in draw order."""
    if not path.is_file():
        return {}
    with np.load(path, allow_pickle=False) as data:
        return {int(i): [float(before), float(after)] for i, before, after
                in zip(data["index"], data["retraining_free"], data["finetuned"], strict=True)}


def _save_atomic(path: Path, arrays: dict[str, np.ndarray]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(".tmp.npz")
    np.savez(temporary, **arrays)
    temporary.replace(path)


def _save_work(path: Path, work: dict[str, Any]) -> None:
    _save_atomic(path, {key: np.array(work[key]) for key in WORK_KEYS})


def _save_sample(path: Path, sample: dict[int, list[float]]) -> None:
    _save_atomic(path, {"index": np.array(list(sample), dtype=np.int64),
                        "retraining_free": np.array([v[0] for v in sample.values()], dtype=np.float64),
                        "finetuned": np.array([v[1] for v in sample.values()], dtype=np.float64)})


def _append(work: dict[str, Any], w: np.ndarray, a: np.ndarray, scores: Any, origin: int) -> None:
    work["w_bits"].append(np.asarray(w, dtype=np.uint8))
    work["a_bits"].append(np.asarray(a, dtype=np.uint8))
    work["kl"].append(scores.kl)
    work["accuracy"].append(scores.accuracy)
    work["origin"].append(origin)


def _table(scorer: Any, work: dict[str, Any], args: argparse.Namespace) -> None:
    from haq_rl.supernet.predictor import PREDICTOR_SAMPLES, walled_random_policies
    from haq_rl.supernet.tabulated import ORIGIN_PREDICTOR_SAMPLE, ORIGIN_RANDOM, ORIGIN_UNIFORM

    deadline = time.monotonic() + 60 * args.table_minutes
    done = len(work["kl"])
    uniforms = [(wb, ab) for wb in range(scorer.min_bits, scorer.max_bits + 1)
                for ab in range(scorer.min_bits, scorer.max_bits + 1)]
    stream = walled_random_policies(scorer, seed=0)
    # Rows are: the predictor's samples, the uniform grid, then the random stream continued.
    random_done = min(done, PREDICTOR_SAMPLES) + max(0, done - PREDICTOR_SAMPLES - len(uniforms))
    for _ in range(random_done):  # replay the random stream (bits only) to resume it
        next(stream)
    started, first = time.monotonic(), done
    while done < args.policies and time.monotonic() < deadline:
        if PREDICTOR_SAMPLES <= done < PREDICTOR_SAMPLES + len(uniforms):
            wb, ab = uniforms[done - PREDICTOR_SAMPLES]
            w, a = scorer.uniform(wb)[0], scorer.uniform(ab)[1]
            _append(work, w, a, scorer.evaluator.scores(w, a), ORIGIN_UNIFORM)
        else:
            w, a = next(stream)
            _append(work, w, a, scorer.evaluator.scores(w, a), ORIGIN_PREDICTOR_SAMPLE if done < PREDICTOR_SAMPLES else ORIGIN_RANDOM)
        done += 1
        if done % 10 == 0:
            _save_work(args.work, work)
            rate = (time.monotonic() - started) / (done - first)
            print(f"table: {done} rows ({rate:.2f} s/row)", flush=True)
    _save_work(args.work, work)


def _sample(task: Any, work: dict[str, Any], args: argparse.Namespace) -> None:
    from haq_rl.finetune import FinetuneConfig, finetune_policy
    from haq_rl.quant import QuantPolicy
    from haq_rl.supernet.tabulated import stratified_sample

    sample = work["sample"]
    if len(sample) < args.sample:
        for i in stratified_sample(_cost_ratios(task, work), -np.array(work["kl"]), args.sample):
            if len(sample) < args.sample:
                sample.setdefault(int(i), [float("nan"), float("nan")])
        _save_sample(args.sample_work, sample)
    deadline = time.monotonic() + 60 * args.finetune_minutes
    for i, entry in sample.items():
        if np.isfinite(entry[1]):
            continue
        if time.monotonic() > deadline:
            break
        policy = QuantPolicy.from_arrays(task.layer_names, work["w_bits"][i], work["a_bits"][i])
        result = finetune_policy(task, policy, FinetuneConfig(epochs=1, start="supernet"), progress=False)
        entry[:] = [result.accuracy_before, result.accuracy]
        _save_sample(args.sample_work, sample)
        measured = sum(np.isfinite(v[1]) for v in sample.values())
        print(f"sample {measured}/{len(sample)}: row {i} -> {result.accuracy_before:.2f} retraining-free, "
              f"{result.accuracy:.2f} after 1 epoch ({result.wall_time_s:.0f} s)", flush=True)


def _write_sample_report(task: Any, work: dict[str, Any], command: str) -> str:
    """The measured sample (``benchmark_table_sample``) and the rankings the issue's goal reads
    (``benchmark_table_spearman``), each as CSV and markdown."""
    from scipy.stats import spearmanr

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from _common import write_results

    measured = [i for i, (_, after) in work["sample"].items() if np.isfinite(after)]
    if len(measured) < 3:
        return f"{len(measured)} sampled policies measured: no sample report yet"
    ratios = _cost_ratios(task, work)
    rows = sorted(({"row": i, "cost_ratio": float(ratios[i]), "reward": -float(work["kl"][i]),
                    "supernet_accuracy": float(work["accuracy"][i]), "retraining_free": work["sample"][i][0],
                    "finetuned": work["sample"][i][1]} for i in measured), key=lambda row: row["cost_ratio"])
    write_results("benchmark_table_sample", rows, f"Stratified sample: {len(rows)} of {len(work['kl'])} tabulated "
                  "policies, test accuracy from the supernet, retraining-free and after 1 epoch", command)

    def rho(part: list[dict[str, Any]], column: str) -> float:
        return float(spearmanr([r["reward"] for r in part], [r[column] for r in part]).statistic)

    # Within cost terciles too: how well the reward ranks policies of similar cost (what a
    # search under one budget needs), beside the whole-range figure the goal names.
    parts = [("all", rows)] + [(f"cost tercile {k + 1} ({part[0]['cost_ratio']:.2f}-{part[-1]['cost_ratio']:.2f})", part)
                               for k, part in enumerate(np.array_split(np.array(rows, dtype=object), 3))]
    ranking = [{"policies": name, "n": len(part), "spearman_finetuned": rho(list(part), "finetuned"),
                "spearman_retraining_free": rho(list(part), "retraining_free")} for name, part in parts]
    path = write_results("benchmark_table_spearman", ranking,
                         "Spearman of the tabulated reward (-KL) against test accuracy on the stratified sample", command)
    return f"{path}: Spearman {ranking[0]['spearman_finetuned']:.3f} fine-tuned, " \
           f"{ranking[0]['spearman_retraining_free']:.3f} retraining-free, n={len(rows)}"


def _cost_ratios(task: Any, work: dict[str, Any]) -> np.ndarray:
    from haq_rl.task.scoring import PolicyScorer

    scorer = PolicyScorer.from_task(task, evaluator=_NoEvaluator(task))
    return np.array([scorer.cost(w, a) / scorer.reference_cost for w, a in zip(work["w_bits"], work["a_bits"],
                                                                                strict=True)])


class _NoEvaluator:
    """Costs only: the scorer's evaluator is never asked for a score here."""

    def __init__(self, task: Any) -> None:
        self.layer_names = list(task.layer_names)
        self.float_accuracy = float("nan")


if __name__ == "__main__":
    main()
