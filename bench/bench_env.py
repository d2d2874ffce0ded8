"""Env overhead per episode vs one reward evaluation, on the default env.

Overhead = reset + all steps + action wall + info, measured on episodes whose policy is
already memoised (so no evaluation runs). Evaluation = applying a fresh policy and
measuring reward-split accuracy. Medians over repeated runs in one process.

    .venv/bin/python bench/bench_env.py [--episodes 30]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import write_results  # noqa: E402

import haq_rl.env  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--env", default=haq_rl.env.DEFAULT_ENV_ID)
    parser.add_argument("--episodes", type=int, default=30)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    env = gym.make(args.env).unwrapped
    rng = np.random.default_rng(0)
    action_sets = [rng.uniform(-1, 1, (env.steps_per_episode, 1)).astype(np.float32)
                   for _ in range(args.episodes)]

    def episode(actions: np.ndarray) -> None:
        env.reset(seed=0)
        for action in actions:
            env.step(action)

    evaluation, overhead = [], []
    for actions in action_sets:
        before = env.scorer.evaluator.eval_seconds
        episode(actions)  # first time: evaluates the policy
        evaluation.append(env.scorer.evaluator.eval_seconds - before)
        started = time.perf_counter()
        episode(actions)  # same policy: memoised, so this is the env's own cost
        overhead.append(time.perf_counter() - started)
    eval_median = statistics.median(evaluation)
    overhead_median = statistics.median(overhead)
    rows = [{
        "env": args.env, "layers": len(env.layer_names), "steps_per_episode": env.steps_per_episode,
        "episodes": args.episodes, "threads": args.threads,
        "evaluation_ms_median": 1000 * eval_median, "env_overhead_ms_median": 1000 * overhead_median,
        "overhead_share_of_evaluation": overhead_median / eval_median,
    }]
    path = write_results("env_overhead", rows, "Env overhead per episode vs one reward evaluation",
                         "python bench/bench_env.py")
    print(path.read_text())


if __name__ == "__main__":
    main()
