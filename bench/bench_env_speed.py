"""Steps per second of one env and of vector envs (issue 39: a benchmark says how fast it steps).

Each mode steps random actions (seeded) through ``episodes`` episodes per env, twice: the
first pass evaluates every new policy at the episode's last step (post-training: a forward
pass over the reward images), the second repeats the same actions, so every policy is a
memoised look-up and the rate is the env's own overhead (reset, steps, wall, info). Modes:
``single`` (``gymnasium.make``, the Python loop an agent runs), ``sync`` and ``async``
(``gymnasium.make_vec`` with ``num_envs`` envs; async forks one worker per env, one torch
thread each). Env construction is not timed (it is reported apart).

    OMP_NUM_THREADS=1 .venv/bin/python bench/bench_env_speed.py --env haq_rl/LeNet5Size-v1 --episodes 200
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("OMP_NUM_THREADS", "1")

import gymnasium as gym  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import write_results  # noqa: E402

import haq_rl.env  # noqa: E402,F401  (registers the ids)

MODES = ("single", "sync", "async")


def _single(env_id: str, episodes: int, seed: int, passes: tuple[str, ...]) -> list[dict[str, Any]]:
    started = time.perf_counter()
    env = gym.make(env_id)
    build_s = time.perf_counter() - started
    steps = env.unwrapped.steps_per_episode
    actions = np.random.default_rng(seed).uniform(-1, 1, (episodes, steps, *env.action_space.shape)).astype(np.float32)
    rows = []
    for label in passes:
        started = time.perf_counter()
        for episode in range(episodes):
            env.reset(seed=seed + episode)
            for step in range(steps):
                env.step(actions[episode, step])
        rows.append(_row(env_id, "single", 1, label, episodes, episodes * steps, time.perf_counter() - started,
                         build_s))
    env.close()
    return rows


def _vector(env_id: str, mode: str, num_envs: int, episodes: int, seed: int,
            passes: tuple[str, ...]) -> list[dict[str, Any]]:
    started = time.perf_counter()
    vec = gym.make_vec(env_id, num_envs=num_envs, vectorization_mode=mode)
    build_s = time.perf_counter() - started
    steps = vec.call("get_wrapper_attr", "steps_per_episode")[0]
    shape = vec.single_action_space.shape
    # Gymnasium 1.x autoresets on the step after an episode ends: steps + 1 calls per episode.
    calls = episodes * (steps + 1)
    actions = np.random.default_rng(seed).uniform(-1, 1, (calls, num_envs, *shape)).astype(np.float32)
    rows = []
    for label in passes:
        vec.reset(seed=seed)
        started = time.perf_counter()
        for call in range(calls):
            vec.step(actions[call])
        rows.append(_row(env_id, mode, num_envs, label, episodes * num_envs, episodes * steps * num_envs,
                         time.perf_counter() - started, build_s))
    vec.close()
    return rows


def _row(env_id: str, mode: str, num_envs: int, label: str, episodes: int, env_steps: int, seconds: float,
         build_s: float) -> dict[str, Any]:
    return {"env": env_id, "mode": mode, "num_envs": num_envs, "pass": label, "episodes": episodes,
            "env_steps": env_steps, "seconds": round(seconds, 3), "steps_per_s": round(env_steps / seconds),
            "episodes_per_s": round(episodes / seconds, 1), "us_per_step": round(1e6 * seconds / env_steps, 1),
            "build_s": round(build_s, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--env", default="haq_rl/LeNet5Size-v1")
    parser.add_argument("--episodes", type=int, default=200, help="episodes per env per pass")
    parser.add_argument("--num-envs", type=int, default=2)
    parser.add_argument("--modes", nargs="+", choices=MODES, default=list(MODES))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--name", default="env_speed")
    parser.add_argument("--first-pass-only", action="store_true",
                        help="skip the memoised pass (the instant ids look every policy up anyway)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    passes = ("first visit",) if args.first_pass_only else ("first visit", "memoised")
    rows: list[dict[str, Any]] = []
    for mode in args.modes:
        rows += (_single(args.env, args.episodes, args.seed, passes) if mode == "single"
                 else _vector(args.env, mode, args.num_envs, args.episodes, args.seed, passes))
        for row in rows[-len(passes):]:
            print(row, flush=True)
    path = write_results(args.name, rows, f"Env steps per second on {args.env} (1 thread per process)",
                         "OMP_NUM_THREADS=1 python bench/bench_env_speed.py " + " ".join(sys.argv[1:]))
    print(path)


if __name__ == "__main__":
    main()
