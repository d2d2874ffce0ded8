"""Reward fidelity: does a policy's search score rank policies as the fine-tune does?

For every budget, a set of wall-enforced policies from several methods (random actions,
the uniform baseline, both integer-program solutions of ``hawq`` and random local
perturbations of them) is scored by each candidate reward, then fine-tuned with the
standard ``haq-rl finetune`` settings (1 epoch) and measured on the test split.
Fidelity is the Spearman rank correlation, *among the policies of one budget*, between a
reward and the fine-tuned test accuracy (across budgets the budget alone would make it
look high). Each reward's evaluation time is its median seconds per policy.

    .venv/bin/python bench/bench_fidelity.py --budgets 0.3 0.5 0.7 --random 7 --perturbed 4 --jobs 2

Rewards (``reward_metric`` / ``bn_recalibration`` / ``finetune_steps`` / ``reward_source``
of the env spec): ``accuracy`` (HAQ) and ``kl`` (minus the KL divergence from the float
model), each as it is, after BatchNorm re-estimation on 2 search-train batches
(``_bn``), after HAQ's short per-policy fine-tune of 16 steps (``_ft16``), on the task's
bit-width supernet (``_supernet``, docs/supernet.md) and from the predictor fitted on
supernet evaluations (``_predictor``). One evaluation gives both the accuracy and the KL
of a setting, so they share its time.

Targets: ``finetuned_test``, the standard fine-tune from the float model (what a search
on a post-training reward hands over), and with ``--supernet-target`` also
``finetuned_supernet_test``, the same fine-tune started from the supernet at the policy
(what a search on the supernet reward hands over, ``FinetuneConfig(start="supernet")``).
``--settings`` picks the rewards (default: all but ``_ft16``, which costs 20 s a policy).
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

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import write_results  # noqa: E402

from haq_rl.task.spec import DEFAULT_ENV_ID, resolve_spec  # noqa: E402

#: evaluation setting -> env spec overrides; each gives an accuracy and a KL reward.
SETTINGS: dict[str, dict[str, Any]] = {
    "": {},
    "_bn": {"bn_recalibration": 2},
    "_ft16": {"finetune_steps": 16},
    "_supernet": {"reward_source": "supernet"},
    "_predictor": {"reward_source": "predictor"},
}
DEFAULT_SETTINGS = ["", "_bn", "_supernet", "_predictor"]
TARGETS = ("finetuned_test", "finetuned_supernet_test")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--env", default=DEFAULT_ENV_ID)
    parser.add_argument("--budgets", type=float, nargs="+", default=[0.3, 0.5, 0.7])
    parser.add_argument("--random", type=int, default=7, help="random wall-enforced policies per budget")
    parser.add_argument("--perturbed", type=int, default=4, help="perturbations of the hawq policies per budget")
    parser.add_argument("--epochs", type=int, default=1, help="fine-tune epochs (haq-rl finetune's default)")
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--settings", nargs="+", default=DEFAULT_SETTINGS, choices=list(SETTINGS),
                        help="reward settings to score ('' is the plain post-training reward)")
    parser.add_argument("--supernet-target", action="store_true",
                        help="also fine-tune every policy from the supernet (finetuned_supernet_test)")
    parser.add_argument("--name", default="fidelity", help="results file stem")
    args = parser.parse_args()
    torch.set_num_threads(args.jobs)
    policies = _policies(args)
    for setting in args.settings:  # train / fit what the workers would otherwise each compute
        started = time.perf_counter()
        _env_for(args.env, setting)
        print(f"reward setting {setting or 'post-training'} ready in {time.perf_counter() - started:.0f} s",
              flush=True)
    _ENVS.clear()
    context = multiprocessing.get_context("spawn")
    rows: list[dict[str, Any]] = []
    jobs = [(args.env, args.epochs, p, tuple(args.settings), args.supernet_target) for p in policies]
    with ProcessPoolExecutor(max_workers=args.jobs, mp_context=context, initializer=_init_worker) as pool:
        for row in pool.map(_score_policy, jobs):
            rows.append(row)
            print({k: v for k, v in row.items() if k not in ("w_bits", "a_bits")}, flush=True)
    command = (f"python bench/bench_fidelity.py --budgets {' '.join(map(str, args.budgets))} "
               f"--random {args.random} --perturbed {args.perturbed} --jobs {args.jobs} "
               f"--settings {' '.join(repr(s) for s in args.settings)}"
               f"{' --supernet-target' if args.supernet_target else ''} --name {args.name}")
    write_results(f"{args.name}_policies", [{k: v for k, v in r.items() if k not in ("w_bits", "a_bits")}
                                            for r in rows], "Reward fidelity: one row per policy", command)
    targets = [t for t in TARGETS if t in rows[0]]
    path = write_results(args.name, _summary(rows, args.budgets, args.settings, targets),
                         "Reward fidelity (within-budget Spearman of the reward vs the fine-tuned test "
                         "accuracy)", command)
    print(path.read_text())


def _policies(args: argparse.Namespace) -> list[dict[str, Any]]:
    """Wall-enforced policies of several methods for every budget."""
    from haq_rl.env.factory import make_env
    from haq_rl.search.harness import SearchSetup
    from haq_rl.search.hawq import integer_program_policy, measure_sensitivity
    from haq_rl.task.budget import uniform_bits

    env = make_env(resolve_spec(args.env))
    started = time.perf_counter()
    sensitivity = measure_sensitivity(SearchSetup(task=env.task, scorer=env.scorer, env=env),
                                      probes=32, images=256, seed=0)
    print(f"sensitivity measured in {time.perf_counter() - started:.0f} s", flush=True)
    policies: list[dict[str, Any]] = []
    for budget in args.budgets:
        env.scorer.budget_ratio = budget
        env.scorer.budget_cost = budget * env.scorer.reference_cost
        rng = np.random.default_rng(int(budget * 1000))

        def add(method: str, w: np.ndarray, a: np.ndarray, budget: float = budget) -> None:
            w, a, _ = env.scorer.apply_wall(np.asarray(w), np.asarray(a))
            policies.append({"budget": budget, "method": method, "w_bits": w.tolist(), "a_bits": a.tolist(),
                             "cost_ratio": env.scorer.cost(w, a) / env.scorer.reference_cost})

        for bits in range(env.max_bits, env.min_bits - 1, -1):
            w, a = uniform_bits(env.pinned, env.weight_only, bits)
            if env.scorer.cost(w, a) <= env.scorer.budget_cost:
                add("uniform", w, a)
                break
        anchors = []
        for tied in (True, False):
            w, a = integer_program_policy(env.scorer, sensitivity, tied)
            add("hawq" if tied else "hawq-separate", w, a)
            anchors.append((w, a))
        for i in range(args.perturbed):
            w, a = (x.copy() for x in anchors[i % 2])
            free = np.flatnonzero(~env.pinned)
            for layer in rng.choice(free, size=min(10, len(free)), replace=False):
                target = w if rng.random() < 0.5 else a
                target[layer] = np.clip(target[layer] + rng.choice([-2, -1, 1, 2]), env.min_bits, env.max_bits)
            add("hawq-perturbed", w, a)
        for _ in range(args.random):
            w = rng.integers(env.min_bits, env.max_bits + 1, size=len(env.pinned))
            a = rng.integers(env.min_bits, env.max_bits + 1, size=len(env.pinned))
            add("random", w, a)
    return policies


_ENVS: dict[tuple[str, str], Any] = {}


def _init_worker() -> None:
    torch.set_num_threads(1)


def _env_for(env_id: str, setting: str) -> Any:
    from haq_rl.env.factory import make_env

    key = (env_id, setting)
    if key not in _ENVS:
        _ENVS[key] = make_env(resolve_spec(env_id), **SETTINGS[setting])
    return _ENVS[key]


def _score_policy(job: tuple[str, int, dict[str, Any], tuple[str, ...], bool]) -> dict[str, Any]:
    from haq_rl.finetune import FinetuneConfig, finetune_policy
    from haq_rl.quant import QuantPolicy

    env_id, epochs, policy, settings, supernet_target = job
    w, a = np.asarray(policy["w_bits"]), np.asarray(policy["a_bits"])
    row = dict(policy)
    for setting in settings:
        env = _env_for(env_id, setting)
        started = time.perf_counter()
        scores = env.scorer.evaluator.scores(w, a)
        row[f"eval{setting}_s"] = time.perf_counter() - started
        row[f"accuracy{setting}"] = scores.accuracy
        row[f"kl{setting}"] = -scores.kl
    task = _env_for(env_id, "").task
    quant_policy = QuantPolicy.from_arrays(task.layer_names, w, a)
    result = finetune_policy(task, quant_policy, FinetuneConfig(epochs=epochs, start="float"), progress=False)
    row["test_before"] = result.accuracy_before
    row["finetuned_test"] = result.accuracy
    row["finetune_s"] = result.wall_time_s
    if supernet_target:
        result = finetune_policy(task, quant_policy, FinetuneConfig(epochs=epochs, start="supernet"), progress=False)
        row["supernet_test_before"] = result.accuracy_before
        row["finetuned_supernet_test"] = result.accuracy
        row["finetune_supernet_s"] = result.wall_time_s
    return row


def _spearman(x: list[float], y: list[float]) -> float:
    from scipy.stats import spearmanr

    value = spearmanr(x, y).statistic
    return float(value) if np.isfinite(value) else 0.0


def _summary(rows: list[dict[str, Any]], budgets: list[float], settings: list[str],
             targets: list[str]) -> list[dict[str, Any]]:
    """One row per (reward, target): the within-budget Spearman at each budget and its cost."""
    summary = []
    base_seconds = statistics.median(r[f"eval{settings[0]}_s"] for r in rows)
    for setting in settings:
        for score in ("accuracy", "kl"):
            reward = f"{score}{setting}"
            for target in targets:
                entry: dict[str, Any] = {"reward": reward, "target": target}
                per_budget = []
                for budget in budgets:
                    group = [r for r in rows if r["budget"] == budget]
                    value = _spearman([r[reward] for r in group], [r[target] for r in group])
                    entry[f"spearman_{budget}"] = value
                    per_budget.append(value)
                entry["spearman_mean"] = statistics.mean(per_budget)
                seconds = statistics.median(r[f"eval{setting}_s"] for r in rows)
                entry["eval_s"] = seconds
                entry["cost_vs_first"] = seconds / base_seconds
                entry["policies_per_budget"] = len(rows) // len(budgets)
                summary.append(entry)
    return summary


if __name__ == "__main__":
    main()
