"""The reward range of the registered envs: what fixed policies score, for docs/environments.md.

For each env: the final reward of the uniform 8/8, 4/4 and 2/2 policies as they are (no
wall; pinned layers at 8, weight-only objectives keep activations at 8), each with its
cost ratio to 8/8 (a ratio above the budget means the env's wall would cut it), and the
wall's worst case: the all-8-bit proposal, which the wall lowers from the last layer
first until it fits (the policy of an agent that ignores the budget). One process, one
thread; each env is built once (the float model is shipped, the data cached).

    .venv/bin/python bench/bench_reward_range.py --envs haq_rl/LeNet5Size-v1 haq_rl/FashionMobileNetV2Edge-v0
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("OMP_NUM_THREADS", "1")

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import write_results  # noqa: E402

#: Cheap envs first: the post-training reward needs only the shipped float model.
DEFAULT_ENVS = ("haq_rl/LeNet5Size-v1", "haq_rl/FashionResNet8Edge-v0", "haq_rl/FashionMobileNetV2Edge-v0",
                "haq_rl/FashionMobileNetV2BitFusionEnergy-v0", "haq_rl/MobileNetV2Edge-v1",
                "haq_rl/MobileNetV2EdgeAccuracy-v0", "haq_rl/ResNet18BitFusionEnergy-v0")


def reward_range(env_id: str) -> dict[str, Any]:
    """One row: the fixed policies' rewards on ``env_id``'s own scorer."""
    import gymnasium as gym
    import numpy as np
    import torch

    import haq_rl.env  # noqa: F401  (registers the ids)
    from haq_rl.task.budget import uniform_bits

    torch.set_num_threads(1)
    started = time.perf_counter()
    env = gym.make(env_id).unwrapped
    scorer = env.scorer
    spec = env.task.spec
    row: dict[str, Any] = {"env": env_id, "reward": f"{spec.reward_metric}, {spec.reward_source}",
                           "budget": spec.budget, "float_accuracy": round(scorer.evaluator.float_accuracy, 2)}
    for bits in (8, 4, 2):
        w, a = uniform_bits(scorer.pinned, scorer.weight_only, bits)
        info = scorer.score(w, a, enforce=False)
        row[f"uniform_{bits}"] = round(info["reward"], 5)
        row[f"ratio_{bits}"] = round(info["cost_ratio"], 3)
    top = np.full(len(scorer.layer_names), scorer.max_bits, dtype=np.int64)
    worst = scorer.score(top, top, enforce=True)
    row["wall_worst"] = round(worst["reward"], 5)
    row["wall_bits_lowered"] = int(worst["bits_lowered"])
    row["seconds"] = round(time.perf_counter() - started, 1)
    env.close()
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--envs", nargs="+", default=list(DEFAULT_ENVS))
    parser.add_argument("--name", default="reward_range")
    args = parser.parse_args()
    rows = []
    for env_id in args.envs:
        rows.append(reward_range(env_id))
        print(rows[-1], flush=True)
    path = write_results(args.name, rows, "Reward range: fixed policies' final reward per env (post-training)",
                         "python bench/bench_reward_range.py " + " ".join(sys.argv[1:]))
    print(path)


if __name__ == "__main__":
    main()
