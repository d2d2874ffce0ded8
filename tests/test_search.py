"""The search harness: baselines, DDPG, determinism, kill/resume, CLI."""

import json
from pathlib import Path

import numpy as np
import pytest

from haq_rl.checkpoint_io import load_torch_file
from haq_rl.cli import main
from haq_rl.errors import ConfigError, MissingPathError, UnknownNameError
from haq_rl.quant import QuantPolicy
from haq_rl.run.episodes import read_episode_rows
from haq_rl.search import SearchConfig, run_search
from tests.killing import kill_search_after

LENET = "haq_rl/LeNet5Size-v1"
LENET_LATENCY = {"hardware": "bismo-edge", "objective": "latency", "budget": 0.4, "pin_first_last": False}


def _config(tmp_path, name, **kwargs):
    return SearchConfig(env=LENET, out=str(tmp_path / name), progress=False, **kwargs)


def test_uniform_baseline_picks_the_largest_uniform_within_budget(tmp_path):
    result = run_search(_config(tmp_path, "u", method="uniform", episodes=7))
    rows = read_episode_rows(result.run_dir / "episodes.csv")
    widths = [int(r["w:classifier.1"]) for r in rows]
    assert widths[0] == 3 and widths[1:] == [8, 7, 6, 5, 4, 2]  # chosen first, then the rest
    policy = QuantPolicy.from_json(result.best_policy_path)
    assert policy.w_bits.tolist() == [3] * 5 and result.best["episode"] == 0
    assert float(rows[0]["cost_ratio"]) <= 0.4


def test_greedy_and_random_meet_the_budget(tmp_path):
    for method in ("greedy", "random"):
        result = run_search(_config(tmp_path, method, method=method, episodes=25))
        rows = read_episode_rows(result.run_dir / "episodes.csv")
        assert len(rows) <= 25 and result.best_cost_ratio <= 0.4 + 1e-9
        assert {r["phase"] for r in rows} == {method}
        best_row = rows[int(result.best["episode"])]
        assert float(best_row["reward"]) == pytest.approx(result.best["reward"])


def test_ddpg_run_directory_and_determinism(tmp_path):
    agent = {"warmup_episodes": 4}
    first = run_search(_config(tmp_path, "a", method="ddpg", episodes=10, agent=agent,
                               env_overrides=LENET_LATENCY))
    second = run_search(_config(tmp_path, "b", method="ddpg", episodes=10, agent=agent,
                                env_overrides=LENET_LATENCY))
    for name in ("config.json", "episodes.csv", "best_policy.json", "agent.pt", "actor.pt", "replay_buffer.npz"):
        assert (first.run_dir / name).is_file()
    rows = read_episode_rows(first.run_dir / "episodes.csv")
    assert [r["phase"] for r in rows] == ["warm-up"] * 4 + ["explore"] * 5 + ["final"]
    assert [int(r["episode"]) for r in rows] == list(range(10))
    assert all(float(r["cost_ratio"]) <= 0.4 + 1e-9 for r in rows)
    assert (first.run_dir / "episodes.csv").read_text() == (second.run_dir / "episodes.csv").read_text()
    # 10 episodes = 4 warm-up + 5 noisy + 1 final: HAQ's noise schedule fitted to 5 noisy episodes.
    assert _saved_agent_settings(first.run_dir)["noise_decay"] == pytest.approx(0.99 ** (580 / 5))


def test_explicit_noise_decay_is_kept(tmp_path):
    result = run_search(_config(tmp_path, "d", method="ddpg", episodes=3,
                                agent={"warmup_episodes": 1, "noise_decay": 0.99}))
    assert _saved_agent_settings(result.run_dir)["noise_decay"] == 0.99


def _saved_agent_settings(run_dir):
    """The AgentConfig agent.pt records (read as plain data: weights_only)."""
    return json.loads(load_torch_file(run_dir / "agent.pt")["config"])


def test_sigkill_then_resume_has_every_episode_exactly_once(tmp_path):
    run_dir = tmp_path / "killed"
    episodes = 40
    flags = [LENET, "--episodes", str(episodes), "--checkpoint-every", "5", "--agent", "warmup_episodes=5",
             "--no-progress"]
    killed_rows = kill_search_after(flags, run_dir, rows=13)
    csv_path = run_dir / "episodes.csv"
    assert 13 <= killed_rows < episodes
    assert main(["search", "--resume", str(run_dir), "--no-progress"]) == 0
    rows = read_episode_rows(csv_path)
    assert [int(r["episode"]) for r in rows] == list(range(episodes))
    assert rows[-1]["phase"] == "final"
    policy = QuantPolicy.from_json(run_dir / "best_policy.json")
    assert policy.metadata["metrics"]["cost_ratio"] <= 0.4 + 1e-9
    best_row = rows[policy.metadata["episode"]]
    assert np.array_equal(policy.w_bits, [int(best_row[f"w:{n}"]) for n in policy.layer_names])


def test_bad_inputs(tmp_path, capsys):
    with pytest.raises(UnknownNameError, match="did you mean 'random'"):
        SearchConfig(method="randon")
    with pytest.raises(ConfigError, match="episodes=0"):
        SearchConfig(episodes=0)
    with pytest.raises(MissingPathError, match="config.json"):
        run_search(SearchConfig(progress=False), resume=tmp_path / "nothing")
    run_search(_config(tmp_path, "once", method="uniform", episodes=2))
    with pytest.raises(ConfigError, match="already holds a search"):
        run_search(_config(tmp_path, "once", method="uniform", episodes=2))
    assert main(["search", LENET, "--method", "ddgp", "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "did you mean 'ddpg'" in err
    assert main(["search", LENET, "--budget", "0.01", "--out", str(tmp_path / "y")]) == 2
    assert "minimum achievable ratio" in capsys.readouterr().err


def test_cli_search_prints_policy_and_run_dir(tmp_path, capsys):
    out = tmp_path / "cli"
    assert main(["search", LENET, "--method", "random", "--episodes", "3", "--out", str(out)]) == 0
    captured = capsys.readouterr()
    assert "3/3" in captured.err  # the progress bar counts episodes, not the best one's index
    text = captured.out
    assert "best policy" in text and "features.0" in text and f"run directory: {out}" in text
    assert Path(out, "best_policy.json").is_file()
