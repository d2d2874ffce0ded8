"""docs/leaderboard.md's numbers come from bench/bench_leaderboard.py: one cheap row, rerun."""

from __future__ import annotations

import csv
import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
RUNS = ROOT / "bench" / "results" / "leaderboard.csv"


def _bench_module():
    spec = importlib.util.spec_from_file_location("bench_leaderboard", ROOT / "bench" / "bench_leaderboard.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow  # two searches (hawq, random) through the harness: ~1 min on shared cores
def test_the_random_row_of_the_leaderboard_is_what_its_command_gives(tmp_path, monkeypatch):
    rows = [r for r in csv.DictReader(RUNS.open()) if r["method"] == "random" and r["seed"] == "0"]
    assert rows, f"{RUNS} holds no random seed-0 row"
    row = rows[0]
    bench = _bench_module()
    monkeypatch.setattr(bench, "RESULTS", tmp_path)  # the run folders go to tmp_path
    anchors = bench.anchor_rewards(row["env"])
    again = bench.run_one(row["env"], "random", 0, int(row["episodes"]), anchors)
    assert again["best_reward"] == pytest.approx(float(row["best_reward"]), rel=1e-9)
    assert again["score"] == pytest.approx(float(row["score"]), rel=1e-6)


def test_the_accuracy_level_score_is_normalised_as_the_reward_score():
    # 0 at the uniform anchor's fine-tuned accuracy, 1 at hawq's; means over the seeds fine-tuned.
    bench = _bench_module()
    env = "haq_rl/X-v0"
    runs = [{"env": env, "method": "tpe", "seed": seed, "episodes": 50, "best_reward": -0.05, "score": 0.5,
             "seconds": 1.0} for seed in (0, 1, 2)]
    accuracy = {(env, "anchor:uniform", 0): {"finetuned": 90.0}, (env, "anchor:hawq", 0): {"finetuned": 92.0},
                (env, "tpe", 0): {"finetuned": 93.0}, (env, "tpe", 1): {"finetuned": 91.0}}
    row = bench.summarise(runs, accuracy)[0]
    assert row["fine-tuned seeds"] == 2 and row["mean fine-tuned accuracy"] == 92.0
    assert row["accuracy score"] == pytest.approx(1.0)
    assert "accuracy score" not in bench.summarise(runs)[0]  # no fine-tunes: the reward columns only
