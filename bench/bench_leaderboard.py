"""The leaderboard of the instant benchmark ids (docs/leaderboard.md): every method, fixed
episodes, several seeds, normalised scores.

    OMP_NUM_THREADS=1 .venv/bin/python bench/bench_leaderboard.py            # the whole board
    OMP_NUM_THREADS=1 .venv/bin/python bench/bench_leaderboard.py --methods random --seeds 0 --name check

Each run is one search of ``--episodes`` episodes through the project's harness
(``run_search``), or for ``ppo`` SB3's PPO with its defaults on the same env for as many
episodes; its score is the best final reward it saw. The normalised score is
``(x - uniform) / (hawq - uniform)`` (as CompilerGym normalises to ``-Oz``): 0 is the
largest uniform policy within the budget, 1 the integer program's policy (``hawq`` priced
on the supernet, which the instant ids ship, so no Hessian is computed). Writes
``bench/results/<name>.csv`` (one row per run), ``<name>_summary.csv`` / ``.md`` (mean and
95 % t-interval over seeds per env and method) and, for the default name, the table of
docs/leaderboard.md between its markers.
"""

from __future__ import annotations

import argparse
import csv
import re
import shutil
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(1, str(Path(__file__).resolve().parents[1]))  # a source checkout without an install
from _common import RESULTS, write_results  # noqa: E402

BENCHMARK_IDS = ("haq_rl/MobileNetV2EdgeTabulated-v0",)
METHODS = ("random", "tpe", "nsga2", "hawq:sensitivity=supernet", "guided", "ddpg", "td3", "sac", "ppo", "sdq")
DOC = Path(__file__).resolve().parents[1] / "docs" / "leaderboard.md"
MARKERS = ("<!-- leaderboard:start -->", "<!-- leaderboard:end -->")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--envs", nargs="+", default=list(BENCHMARK_IDS))
    parser.add_argument("--methods", nargs="+", default=list(METHODS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2, 3, 4])
    parser.add_argument("--episodes", type=int, default=100)
    parser.add_argument("--name", default="leaderboard")
    parser.add_argument("--summarise", action="store_true",
                        help="only (re)write the summary and docs table from bench/results/<name>.csv")
    args = parser.parse_args()
    if args.summarise:
        rows = read_runs(RESULTS / f"{args.name}.csv")
        ran = rows[0].get("command") or "python bench/bench_leaderboard.py"
        write_summary(rows, args.name, f"{ran} (summarised from the {len(rows)} runs it finished)")
        return
    rows = []
    command = " ".join(["python bench/bench_leaderboard.py", *sys.argv[1:]])
    for env_id in args.envs:
        anchors = anchor_rewards(env_id)
        for seed in args.seeds:  # seeds outermost: a stopped run still covers every method
            for method in args.methods:
                row = run_one(env_id, method, seed, args.episodes, anchors)
                rows.append(row)
                print(", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items()),
                      flush=True)
                write_results(args.name, [{**r, "command": command} for r in rows], "Leaderboard runs", command)
    write_summary(rows, args.name, command)


def write_summary(rows: list[dict[str, Any]], name: str, command: str) -> None:
    """``<name>_summary.csv/.md`` and, for the default name, docs/leaderboard.md's table."""
    path = write_results(f"{name}_summary", summarise(rows), "Leaderboard", command)
    if name == "leaderboard" and DOC.is_file():
        update_doc(path.read_text().split("\n", 4)[-1])
    print(path.read_text())


def anchor_rewards(env_id: str) -> dict[str, float]:
    """The rewards that define 0 (best uniform within budget) and 1 (hawq) on ``env_id``."""
    import gymnasium as gym

    import haq_rl.env  # noqa: F401  (registers the ids)

    env = gym.make(env_id)
    try:
        scorer = env.unwrapped.scorer
        bits = scorer.largest_uniform()
        uniform = scorer.score(*scorer.uniform(bits))["reward"] if bits is not None else float("nan")
    finally:
        env.close()
    hawq = _search(env_id, "hawq:sensitivity=supernet", 0, 1)["best_reward"]
    return {"uniform": float(uniform), "uniform_bits": float(bits or 0), "hawq": float(hawq)}


def run_one(env_id: str, method: str, seed: int, episodes: int, anchors: dict[str, float]) -> dict[str, Any]:
    started = time.perf_counter()
    found = _ppo(env_id, seed, episodes) if method == "ppo" else _search(env_id, method, seed, episodes)
    reward = found["best_reward"]
    return {"env": env_id, "method": method, "seed": seed, "episodes": episodes, "best_reward": reward,
            "score": normalised(reward, anchors), "best_cost_ratio": found["best_cost_ratio"],
            "seconds": time.perf_counter() - started}


def normalised(reward: float, anchors: dict[str, float]) -> float:
    """0 at the best uniform policy within the budget, 1 at hawq's policy; where the uniform
    policy beats hawq (the supernet reward can rank 4/4 above hawq's mix), hawq is -1 and
    the scale still grows with the reward (docs/leaderboard.md)."""
    return (reward - anchors["uniform"]) / abs(anchors["hawq"] - anchors["uniform"])


def _search(env_id: str, method: str, seed: int, episodes: int) -> dict[str, float]:
    from haq_rl.search import SearchConfig, run_search

    name, _, text = method.partition(":")
    options = dict(item.split("=", 1) for item in text.split(",")) if text else {}
    out = RESULTS / "leaderboard_runs" / f"{env_id.split('/')[-1]}_{method.replace(':', '_')}_s{seed}"
    shutil.rmtree(out, ignore_errors=True)
    result = run_search(SearchConfig(env=env_id, method=name, episodes=episodes, seed=seed, out=str(out),
                                     progress=False, options=options))
    return {"best_reward": float(result.best["reward"]), "best_cost_ratio": result.best_cost_ratio}


def _ppo(env_id: str, seed: int, episodes: int) -> dict[str, float]:
    """SB3's PPO with its defaults for ``episodes`` episodes; the best final reward seen."""
    import gymnasium as gym
    from stable_baselines3 import PPO

    import haq_rl.env  # noqa: F401

    env = gym.make(env_id)
    best = {"best_reward": -float("inf"), "best_cost_ratio": float("nan"), "episodes": 0}

    class _Best(gym.Wrapper):
        """Keeps the best final reward of the first ``episodes`` episodes (PPO's last rollout
        may run past them: those are not counted, as with every other method)."""

        def step(self, action: Any) -> Any:
            observation, reward, terminated, truncated, info = self.env.step(action)
            if terminated or truncated:
                best["episodes"] += 1
                if best["episodes"] <= episodes and reward > best["best_reward"]:
                    best.update(best_reward=float(reward), best_cost_ratio=float(info["cost_ratio"]))
            return observation, reward, terminated, truncated, info

    wrapped = _Best(env)
    agent = PPO("MlpPolicy", wrapped, seed=seed, verbose=0, device="cpu")
    agent.learn(total_timesteps=episodes * env.unwrapped.steps_per_episode)
    wrapped.close()
    return best


def summarise(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per env and method: mean score and reward with a 95 % t-interval over seeds."""
    from scipy.stats import t

    out = []
    for env_id in dict.fromkeys(r["env"] for r in rows):
        for method in dict.fromkeys(r["method"] for r in rows if r["env"] == env_id):
            runs = [r for r in rows if r["env"] == env_id and r["method"] == method]
            scores = [r["score"] for r in runs]
            half = (t.ppf(0.975, len(scores) - 1) * statistics.stdev(scores) / np.sqrt(len(scores))
                    if len(scores) > 1 else float("nan"))
            out.append({"env": env_id.split("/")[-1], "method": method, "seeds": len(runs),
                        "episodes": runs[0]["episodes"],
                        "mean reward": statistics.fmean(r["best_reward"] for r in runs),
                        "mean score": statistics.fmean(scores),
                        "95% interval": f"+-{half:.2f}" if np.isfinite(half) else "(one seed)",
                        "seconds per run": statistics.fmean(r["seconds"] for r in runs)})
    return out


def update_doc(table: str) -> None:
    text = DOC.read_text()
    pattern = re.compile(re.escape(MARKERS[0]) + ".*?" + re.escape(MARKERS[1]), re.S)
    DOC.write_text(pattern.sub(lambda _: f"{MARKERS[0]}\n{table.strip()}\n{MARKERS[1]}", text))


def read_runs(path: Path) -> list[dict[str, Any]]:
    """The runs of a finished or stopped board, typed as :func:`run_one` returns them."""
    with open(path, newline="") as stream:
        rows: list[dict[str, Any]] = list(csv.DictReader(stream))
    for row in rows:
        row.update(seed=int(row["seed"]), episodes=int(row["episodes"]),
                   **{key: float(row[key]) for key in ("best_reward", "score", "best_cost_ratio", "seconds")})
    return rows


if __name__ == "__main__":
    main()
