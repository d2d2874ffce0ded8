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

The accuracy level (``--finetune``, after the runs): each run's best policy and the two
anchors' policies fine-tuned once (1 epoch from the supernet, ``haq-rl finetune``'s default
on these tasks, seed 0) and measured on the test split; ``<name>_accuracy.csv`` holds one
row per policy (resumable: rows already there are kept), and the summary gains the mean
fine-tuned accuracy and the accuracy-level score, normalised as the reward is.

    OMP_NUM_THREADS=1 .venv/bin/python bench/bench_leaderboard.py --finetune --seeds 0
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

BENCHMARK_IDS = ("haq_rl/MobileNetV2EdgeTabulated-v1",)
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
    parser.add_argument("--finetune", action="store_true",
                        help="fine-tune the best policies of bench/results/<name>.csv's runs (--envs, --methods, "
                             "--seeds select) and the anchors' into <name>_accuracy.csv, then summarise")
    args = parser.parse_args()
    if args.finetune:
        rows = read_runs(RESULTS / f"{args.name}.csv")
        finetune_runs(rows, args)
        args.summarise = True
    if args.summarise:
        rows = read_runs(RESULTS / f"{args.name}.csv")
        commands = list(dict.fromkeys(row.get("command") or "python bench/bench_leaderboard.py" for row in rows))
        ran = (f"{commands[0]} (summarised from the {len(rows)} runs it finished)" if len(commands) == 1 else
               f"{len(commands)} commands, {len(rows)} runs (each run's command is in bench/results/{args.name}.csv)")
        write_summary(rows, args.name, ran)
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
    path = write_results(f"{name}_summary", summarise(rows, read_accuracy(RESULTS / f"{name}_accuracy.csv")),
                         "Leaderboard", command)
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
    out = run_folder(env_id, method, seed)
    shutil.rmtree(out, ignore_errors=True)
    result = run_search(SearchConfig(env=env_id, method=name, episodes=episodes, seed=seed, out=str(out),
                                     progress=False, options=options))
    return {"best_reward": float(result.best["reward"]), "best_cost_ratio": result.best_cost_ratio}


def run_folder(env_id: str, method: str, seed: int) -> Path:
    """Where a run keeps its best_policy.json (PPO's too)."""
    return RESULTS / "leaderboard_runs" / f"{env_id.split('/')[-1]}_{method.replace(':', '_')}_s{seed}"


def finetune_runs(rows: list[dict[str, Any]], args: argparse.Namespace) -> None:
    """The accuracy level: each selected run's best policy, and each env's anchors (the best
    uniform policy within the budget, hawq's seed-0 policy), fine-tuned once."""
    from haq_rl.finetune import FinetuneConfig, finetune_policy
    from haq_rl.quant import QuantPolicy

    path = RESULTS / f"{args.name}_accuracy.csv"
    done = read_accuracy(path)
    wanted = [r for r in rows if r["env"] in args.envs and r["method"] in args.methods and r["seed"] in args.seeds]
    for env_id in dict.fromkeys(r["env"] for r in wanted):
        task, uniform = _task_and_uniform_anchor(env_id)
        jobs: list[tuple[str, int, QuantPolicy | None]] = [("anchor:hawq", 0, None)]
        if uniform is not None:
            jobs.insert(0, ("anchor:uniform", 0, QuantPolicy.from_arrays(task.layer_names, *uniform)))
        jobs += [(r["method"], r["seed"], None) for r in wanted if r["env"] == env_id]
        for method, seed, policy in jobs:
            if (env_id, method, seed) in done:
                continue
            if policy is None:
                source = run_folder(env_id, "hawq:sensitivity=supernet" if method == "anchor:hawq" else method, seed)
                policy = QuantPolicy.from_json(source / "best_policy.json")
            result = finetune_policy(task, policy, FinetuneConfig(epochs=1, start="supernet"), progress=False)
            done[(env_id, method, seed)] = {"env": env_id, "method": method, "seed": seed,
                                            "retraining_free": result.accuracy_before, "finetuned": result.accuracy,
                                            "seconds": result.wall_time_s}
            _write_accuracy(path, list(done.values()))
            print(f"{env_id} {method} seed {seed}: {result.accuracy_before:.2f} -> {result.accuracy:.2f} "
                  f"({result.wall_time_s:.0f} s)", flush=True)


def _task_and_uniform_anchor(env_id: str) -> tuple[Any, tuple[np.ndarray, np.ndarray] | None]:
    """The env's task and the weight and activation bits of its best uniform policy within the
    budget (the 0 anchor, pinned layers at 8 as the reward's anchor has them), or None."""
    import gymnasium as gym

    import haq_rl.env  # noqa: F401

    env = gym.make(env_id)
    try:
        scorer = env.unwrapped.scorer
        bits = scorer.largest_uniform()
        return env.unwrapped.task, None if bits is None else scorer.uniform(bits)
    finally:
        env.close()


def read_accuracy(path: Path) -> dict[tuple[str, str, int], dict[str, Any]]:
    if not path.is_file():
        return {}
    with open(path, newline="") as stream:
        return {(r["env"], r["method"], int(r["seed"])): {**r, "seed": int(r["seed"]),
                                                           **{k: float(r[k]) for k in ("retraining_free", "finetuned",
                                                                                        "seconds")}}
                for r in csv.DictReader(stream)}


def _write_accuracy(path: Path, rows: list[dict[str, Any]]) -> None:
    temporary = path.with_suffix(".tmp")
    with open(temporary, "w", newline="") as stream:
        writer = csv.DictWriter(stream, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    temporary.replace(path)


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
                    policy[:] = [np.array(info["w_bits"]), np.array(info["a_bits"])]
            return observation, reward, terminated, truncated, info

    policy: list[np.ndarray] = []
    wrapped = _Best(env)
    agent = PPO("MlpPolicy", wrapped, seed=seed, verbose=0, device="cpu")
    agent.learn(total_timesteps=episodes * env.unwrapped.steps_per_episode)
    layer_names = list(env.unwrapped.task.layer_names)
    wrapped.close()
    from haq_rl.quant import QuantPolicy

    out = run_folder(env_id, "ppo", seed)
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    QuantPolicy.from_arrays(layer_names, *policy).to_json(out / "best_policy.json", reward=best["best_reward"])
    return best


def summarise(rows: list[dict[str, Any]],
              accuracy: dict[tuple[str, str, int], dict[str, Any]] | None = None) -> list[dict[str, Any]]:
    """Per env and method: mean score and reward with a 95 % t-interval over seeds; where
    ``accuracy`` (:func:`finetune_runs`) holds fine-tuned runs and the env's anchors, their
    mean test accuracy and accuracy-level score (over the seeds fine-tuned)."""
    from scipy.stats import t

    accuracy = accuracy or {}

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
            if accuracy:
                out[-1].update(_accuracy_columns(accuracy, env_id, method, [r["seed"] for r in runs]))
    return out


def _accuracy_columns(accuracy: dict[tuple[str, str, int], dict[str, Any]], env_id: str, method: str,
                      seeds: list[int]) -> dict[str, Any]:
    """Mean fine-tuned test accuracy of the method's best policies and its accuracy-level score
    (0 at the uniform anchor's fine-tuned accuracy, +-1 at hawq's, as the reward score)."""
    measured = [accuracy[(env_id, method, seed)]["finetuned"] for seed in seeds if (env_id, method, seed) in accuracy]
    uniform = accuracy.get((env_id, "anchor:uniform", 0))
    hawq = accuracy.get((env_id, "anchor:hawq", 0))
    if not measured:
        return {"fine-tuned seeds": 0, "mean fine-tuned accuracy": float("nan"), "accuracy score": float("nan")}
    mean = statistics.fmean(measured)
    score = float("nan")
    if uniform and hawq and hawq["finetuned"] != uniform["finetuned"]:
        score = (mean - uniform["finetuned"]) / abs(hawq["finetuned"] - uniform["finetuned"])
    return {"fine-tuned seeds": len(measured), "mean fine-tuned accuracy": mean, "accuracy score": score}


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
