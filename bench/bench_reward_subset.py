"""How many reward-split images does one reward evaluation need? Fidelity against time.

Wall-enforced random policies (bits drawn from several ranges) are scored with the env's
reward on the whole reward split and on seeded subsets of it (``reward_images``). For each
subset size: the median time of one evaluation, and the Spearman correlation of the
subset's reward with the whole split's over the same policies (1.0: the subset ranks
policies exactly as the whole split does).

    .venv/bin/python bench/bench_reward_subset.py --env haq_rl/FashionMobileNetV2Edge-v0 --budget 0.45 \\
        --policies 16 --sizes 250 500 1000 2000 0
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402
from scipy.stats import spearmanr  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import write_results  # noqa: E402

from haq_rl.task import PolicyScorer, load_task  # noqa: E402

#: Bit ranges the random policies are drawn from (low ranges: policies the wall cuts hard).
RANGES = ((2, 8), (3, 8), (4, 8), (5, 8))


def main() -> None:
    torch.set_num_threads(1)
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--env", default="haq_rl/FashionMobileNetV2Edge-v0")
    parser.add_argument("--budget", type=float, default=0.45)
    parser.add_argument("--policies", type=int, default=16)
    parser.add_argument("--sizes", type=int, nargs="+", default=[250, 500, 1000, 2000, 0],
                        help="reward images per evaluation (0: the whole reward split)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--name", default="reward_subset")
    args = parser.parse_args()
    base = load_task(args.env, budget=args.budget)
    rng = np.random.default_rng(args.seed)
    layers = len(base.layer_names)
    policies = []
    for index in range(args.policies):
        low, high = RANGES[index % len(RANGES)]
        policies.append((rng.integers(low, high + 1, layers), rng.integers(low, high + 1, layers)))
    rewards: dict[int, list[float]] = {}
    timings: dict[int, list[float]] = {}
    for size in args.sizes:
        scorer = PolicyScorer.from_task(base.with_settings(reward_images=size))
        for w_bits, a_bits in policies:
            started = time.perf_counter()
            info = scorer.score(w_bits, a_bits)
            timings.setdefault(size, []).append(time.perf_counter() - started)
            rewards.setdefault(size, []).append(float(info["reward"]))
    whole = rewards[0] if 0 in rewards else rewards[max(rewards)]
    rows: list[dict[str, Any]] = []
    for size in args.sizes:
        images = size or len(base.splits.reward_val)
        rows.append({"reward_images": images, "median_eval_s": round(statistics.median(timings[size]), 3),
                     "spearman_vs_whole_split": round(float(spearmanr(rewards[size], whole).statistic), 4)})
    path = write_results(args.name, rows,
                         f"Reward subsets on {args.env} at budget {args.budget}: {args.policies} wall-enforced "
                         f"random policies (bits from {', '.join(f'[{lo},{hi}]' for lo, hi in RANGES)})",
                         "python bench/bench_reward_subset.py " + " ".join(sys.argv[1:]))
    print(path.read_text())


if __name__ == "__main__":
    main()
