"""HAQ's energy headline on our stack: searched vs uniform after the same fine-tune.

For each seed, the default search (``haq-rl search ENV --seed S``) on the energy env,
then ``haq-rl finetune`` of the run (its default: 1 epoch of LSQ QAT, Adam lr 3e-4, fine-tune seed 0): the searched
policy, uniform 8/8, uniform 4/4 and the largest uniform within budget all get the same
fine-tune and are measured on the test split. Rows give energy over 8/8 and the test
accuracy after fine-tuning, per seed and as mean +- std over seeds.

    .venv/bin/python bench/bench_energy_headline.py --seeds 0 1 2 --jobs 2
    .venv/bin/python bench/bench_energy_headline.py --budget 0.4 --name energy_headline_b04
"""

from __future__ import annotations

import argparse
import multiprocessing
import statistics
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import RESULTS, write_results  # noqa: E402

from haq_rl.finetune import FinetuneConfig, finetune_run  # noqa: E402
from haq_rl.search import SearchConfig, run_search  # noqa: E402

ENV_ID = "haq_rl/ResNet18BitFusionEnergy-v0"


def _one_seed(env_id: str, seed: int, episodes: int, root: str, budget: float | None) -> list[dict[str, Any]]:
    torch.set_num_threads(1)
    run_dir = Path(root) / f"s{seed}"
    config = SearchConfig(env=env_id, seed=seed, episodes=episodes, out=str(run_dir), progress=False,
                          budget=budget)
    if (run_dir / "best_policy.json").is_file() and (run_dir / "episodes.csv").is_file():
        result_dir = run_dir  # a finished search: only fine-tune again
    else:
        result_dir = run_search(config).run_dir
    metrics = finetune_run(result_dir, FinetuneConfig(), progress=False)
    rows = []
    for row in metrics["rows"]:
        rows.append({"seed": seed, "policy": row["name"], "energy_ratio": row["energy_ratio"],
                     "saving_x": 1 / row["energy_ratio"] if row["energy_ratio"] else None,
                     "accuracy_before": row["accuracy_before"], "accuracy": row["accuracy"],
                     "mean_w_bits": _mean(row["w_bits"]), "mean_a_bits": _mean(row["a_bits"])})
    return rows


def _mean(bits: list[int] | None) -> float | None:
    return None if bits is None else sum(bits) / len(bits)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--env", default=ENV_ID)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--episodes", type=int, default=SearchConfig().episodes)
    parser.add_argument("--budget", type=float, default=None, help="override the env's budget")
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--name", default="energy_headline")
    args = parser.parse_args()
    root = RESULTS / f"{args.name}_runs"
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(args.jobs, mp_context=context) as pool:
        futures = [pool.submit(_one_seed, args.env, seed, args.episodes, str(root), args.budget) for seed in args.seeds]
        rows = [row for future in futures for row in future.result()]
    write_results(f"{args.name}_per_seed", rows, f"{args.env}: per seed, test accuracy after the same fine-tune",
                  "python bench/bench_energy_headline.py " + " ".join(sys.argv[1:]))
    summary = []
    for policy in dict.fromkeys(row["policy"] for row in rows):
        mine = [row for row in rows if row["policy"] == policy]
        accuracy = [row["accuracy"] for row in mine]
        energy = [row["energy_ratio"] for row in mine if row["energy_ratio"] is not None]
        summary.append({
            "policy": policy,
            "energy_ratio": statistics.mean(energy) if energy else None,
            "accuracy_mean": statistics.mean(accuracy),
            "accuracy_std": statistics.stdev(accuracy) if len(accuracy) > 1 else 0.0,
            "per_seed": " / ".join(f"{value:.2f}" for value in accuracy),
        })
    path = write_results(args.name, summary, f"{args.env}: mean +- std over seeds {args.seeds}",
                         "python bench/bench_energy_headline.py " + " ".join(sys.argv[1:]))
    print(path.read_text())


if __name__ == "__main__":
    main()
