"""Uniform policies after the standard fine-tune: where does a task leave headroom?

For each width b, the uniform b/b policy (pinned first and last layers at 8) gets the
same fine-tune every method gets (``haq-rl finetune``'s defaults: 1 epoch of LSQ QAT over
the env's ``finetune_epoch_images``, seed 0) and is measured on the test split. Its cost
ratio to 8/8 on the env's hardware says which budget it fits: a budget where the best
uniform policy within it loses >= 2 points to float has room for a search to win.

    .venv/bin/python bench/bench_uniform.py --env haq_rl/FashionMobileNetV2Edge-v0 --bits 8 6 5 4 3 2 --jobs 2
"""

from __future__ import annotations

import argparse
import os
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

os.environ.setdefault("OMP_NUM_THREADS", "1")

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import write_results  # noqa: E402


def _one(env: str, bits: int, seed: int) -> dict[str, Any]:
    import torch

    torch.set_num_threads(1)
    from haq_rl.finetune import FinetuneConfig, finetune_policy, policy_costs, uniform_policy
    from haq_rl.task import PolicyScorer, load_task

    task = load_task(env)
    policy = uniform_policy(task, bits)
    scorer = PolicyScorer.from_task(task.with_settings(budget=1.0))  # no wall: the policy as it is
    reward = scorer.score(policy.w_bits, policy.a_bits)
    result = finetune_policy(task, policy, FinetuneConfig(seed=seed, compare=False), progress=False,
                             desc=f"uniform {bits}/{bits}")
    costs = policy_costs(task, policy)
    return {"bits": bits, "seed": seed, "cost_ratio": round(costs["cost_ratio"], 4),
            "reward_kl": round(reward["kl"], 5), "reward_accuracy": round(reward["accuracy"], 2),
            "test_before": round(result.accuracy_before, 2), "test_finetuned": round(result.accuracy, 2),
            "float_test": task.meta.get("test_accuracy"),
            "loss_vs_float": round(float(task.meta.get("test_accuracy", 0.0)) - result.accuracy, 2),
            "finetune_s": round(result.wall_time_s, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--env", default="haq_rl/FashionMobileNetV2Edge-v0")
    parser.add_argument("--bits", type=int, nargs="+", default=[8, 6, 5, 4, 3, 2])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--name", default="uniform_headroom")
    args = parser.parse_args()
    with ProcessPoolExecutor(max_workers=args.jobs) as pool:
        rows = list(pool.map(_one, [args.env] * len(args.bits), args.bits, [args.seed] * len(args.bits)))
    path = write_results(args.name, rows, f"Uniform policies after the standard fine-tune on {args.env}",
                         "python bench/bench_uniform.py " + " ".join(sys.argv[1:]))
    print(path.read_text())


if __name__ == "__main__":
    main()
