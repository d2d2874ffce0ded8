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
2. ``sample``: a stratified sample (cost-ratio bins x reward ranks, interleaved so any
   prefix is stratified) started from the supernet at the policy and measured on the test
   split: retraining-free (0 epochs) for all, then the standard 1-epoch fine-tune
   (``haq-rl finetune``'s defaults) in sample order until the deadline.
3. ``ship``: the table and the predictor's samples written as compressed ``.npz`` (no
   pickle) with their SHA-256 in ``manifest.json`` (:mod:`haq_rl.supernet.tabulated`).
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
    parser.add_argument("--phases", nargs="+", default=["table", "sample", "ship"],
                        choices=["table", "sample", "ship"])
    args = parser.parse_args()

    from haq_rl.task import load_task
    from haq_rl.task.scoring import scorer_for_task

    task = load_task(args.env)
    if task.spec.reward_source != "supernet":
        parser.error(f"--env {args.env} has reward_source {task.spec.reward_source!r}; a supernet task is needed")
    work = _load_work(args.work)
    if "table" in args.phases:
        scorer = scorer_for_task(task)
        _table(scorer, work, args)
    if "sample" in args.phases:
        _sample(task, work, args)
    if "ship" in args.phases:
        from haq_rl.supernet.tabulated import ship_table

        print(ship_table(args.env, task, work, command=" ".join(["python bench/build_benchmark_table.py", *sys.argv[1:]])))


def _load_work(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {"w_bits": [], "a_bits": [], "kl": [], "accuracy": [], "origin": [], "sample": {}}
    with np.load(path, allow_pickle=False) as data:
        work: dict[str, Any] = {key: list(data[key]) for key in WORK_KEYS}
        sample = {}
        if "sample_index" in data:
            for i, before, after in zip(data["sample_index"], data["sample_retraining_free"],
                                        data["sample_finetuned"], strict=True):
                sample[int(i)] = [float(before), float(after)]
        work["sample"] = sample
    return work


def _save_work(path: Path, work: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    index = sorted(work["sample"])
    arrays = {key: np.array(work[key]) for key in WORK_KEYS}
    arrays["sample_index"] = np.array(index, dtype=np.int64)
    arrays["sample_retraining_free"] = np.array([work["sample"][i][0] for i in index], dtype=np.float64)
    arrays["sample_finetuned"] = np.array([work["sample"][i][1] for i in index], dtype=np.float64)
    temporary = path.with_suffix(".tmp.npz")
    np.savez(temporary, **arrays)
    temporary.replace(path)


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
    started = time.monotonic()
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
            rate = (time.monotonic() - started) / max(1, done - random_done)
            print(f"table: {done} rows ({rate:.2f} s/row)", flush=True)
    _save_work(args.work, work)


def _sample(task: Any, work: dict[str, Any], args: argparse.Namespace) -> None:
    from haq_rl.finetune import FinetuneConfig, finetune_policy
    from haq_rl.quant import QuantPolicy
    from haq_rl.supernet.tabulated import stratified_sample

    ratios = _cost_ratios(task, work)
    order = stratified_sample(ratios, -np.array(work["kl"]), args.sample)
    deadline = time.monotonic() + 60 * args.finetune_minutes
    for epochs in (0, 1):
        for i in order:
            entry = work["sample"].setdefault(int(i), [float("nan"), float("nan")])
            if not np.isnan(entry[epochs]):
                continue
            if epochs == 1 and time.monotonic() > deadline:
                break
            policy = QuantPolicy.from_arrays(task.layer_names, work["w_bits"][i], work["a_bits"][i])
            result = finetune_policy(task, policy, FinetuneConfig(epochs=epochs, start="supernet"), progress=False)
            entry[epochs] = result.accuracy
            _save_work(args.work, work)
            print(f"sample {i}: {epochs} epochs -> {result.accuracy:.2f} ({result.wall_time_s:.0f} s)", flush=True)


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
