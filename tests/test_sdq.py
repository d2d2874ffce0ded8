"""``--method sdq``: differentiable bit widths in the same harness (haq_rl.search.sdq)."""

import time

import numpy as np
import pytest
import torch

from haq_rl.cli import main
from haq_rl.errors import BudgetError, DivergenceError
from haq_rl.fileio import read_json
from haq_rl.run.episodes import read_episode_rows
from haq_rl.search import SearchConfig, run_search
from haq_rl.search.sdq import STATE_FILE, temperature_at
from tests import killing

LENET = "haq_rl/LeNet5Size-v1"
#: Few, fast steps: enough for the expected cost to reach the budget on LeNet-5.
FAST = {"steps": 40, "bit_lr": 0.3, "batch_size": 32}

# Three envs, three objectives: LeNet-5 by size, ResNet-8 by latency (BISMO), LeNet-5 by
# energy (BitFusion).
ENVS = [
    pytest.param(LENET, {}, 0.4, id="lenet5-size"),
    pytest.param("haq_rl/ResNet8Edge-v0", {}, 0.45, id="resnet8-latency"),
    pytest.param(LENET, {"hardware": "bitfusion", "objective": "energy", "weight_method": "linear"}, 0.5,
                 id="lenet5-energy"),
]


def _policy(run_dir):
    return read_json(run_dir / "best_policy.json")["layers"]


def _config(tmp_path, name, env=LENET, overrides=None, budget=0.4, **options):
    return SearchConfig(env=env, method="sdq", episodes=5, budget=budget, out=str(tmp_path / name), progress=False,
                        env_overrides=overrides or {}, options={**FAST, **options})


@pytest.mark.parametrize(("env", "overrides", "budget"), ENVS)
def test_policy_meets_the_budget_after_the_wall_with_one_evaluation(tmp_path, env, overrides, budget):
    result = run_search(_config(tmp_path, "run", env, overrides, budget))
    rows = read_episode_rows(tmp_path / "run" / "episodes.csv")
    assert result.evaluations == 1 and len(rows) == 1 and rows[0]["phase"] == "sdq"
    assert result.best_cost_ratio <= budget + 1e-9
    # The relaxation lowered bits from 8 (it was not the wall alone): most layers below 8.
    policy = read_json(tmp_path / "run" / "best_policy.json")["layers"]
    assert sum(layer["w_bits"] < 8 for layer in policy.values()) >= len(policy) // 2
    state = torch.load(tmp_path / "run" / STATE_FILE, weights_only=True)
    assert state["step"] == FAST["steps"] and state["lowest"] <= 1.02


def test_edmips_relaxation_meets_the_budget(tmp_path):
    result = run_search(_config(tmp_path, "run", relaxation="edmips", bit_lr=0.5))
    assert result.best_cost_ratio <= 0.4 + 1e-9
    assert read_episode_rows(tmp_path / "run" / "episodes.csv")[0]["phase"] == "edmips"


def test_temperature_schedule_is_geometric():
    assert temperature_at(0, 11, 1.0, 0.01) == pytest.approx(1.0)
    assert temperature_at(5, 11, 1.0, 0.01) == pytest.approx(0.1)
    assert temperature_at(10, 11, 1.0, 0.01) == pytest.approx(0.01)


def test_same_seed_same_policy_and_a_finished_run_resumes_without_training(tmp_path):
    first = run_search(_config(tmp_path, "a"))
    second = run_search(_config(tmp_path, "b"))
    assert _policy(first.run_dir) == _policy(second.run_dir)
    before = (tmp_path / "a" / STATE_FILE).stat().st_mtime_ns
    resumed = run_search(_config(tmp_path, "a"), resume=tmp_path / "a")
    assert _policy(resumed.run_dir) == _policy(first.run_dir) and resumed.evaluations == 0
    assert (tmp_path / "a" / STATE_FILE).stat().st_mtime_ns == before  # read, not retrained


@pytest.mark.slow  # three LeNet-5 trainings of 400 steps, one in a subprocess (~30 s of CPU)
def test_kill_during_training_then_resume_gives_the_uninterrupted_policy(tmp_path):
    options = {"steps": 400, "bit_lr": 0.05, "batch_size": 32}
    flags = [LENET, "--method", "sdq", "--budget", "0.4", "--no-progress"]
    flags += [item for key, value in options.items() for item in ("--option", f"{key}={value}")]
    run_dir = tmp_path / "killed"
    process = killing.start(["search", *flags, "--out", str(run_dir)])
    deadline = time.monotonic() + 300
    while not (run_dir / STATE_FILE).is_file() and time.monotonic() < deadline:
        assert process.poll() is None, process.stderr.read().decode()[-2000:]
        time.sleep(0.02)
    killing.kill(process)
    killed_at = torch.load(run_dir / STATE_FILE, weights_only=True)["step"]
    assert 0 < killed_at < options["steps"]
    assert not (run_dir / "episodes.csv").exists() or read_episode_rows(run_dir / "episodes.csv") == []
    resumed = run_search(SearchConfig(progress=False), resume=run_dir)
    whole = run_search(_config(tmp_path, "whole", **options))
    assert _policy(resumed.run_dir) == _policy(whole.run_dir)
    assert resumed.best["reward"] == pytest.approx(whole.best["reward"])


def test_unreachable_budget_names_the_lowest_expected_cost(tmp_path, capsys):
    with pytest.raises(BudgetError, match=r"lowest expected cost reached was \d\.\d+ of 8/8"):
        run_search(_config(tmp_path, "run", steps=3, bit_lr=0.01))
    assert not (tmp_path / "run").exists()
    code = main(["search", LENET, "--method", "sdq", "--budget", "0.4", "--out", str(tmp_path / "cli"),
                 "--no-progress", "--option", "steps=3", "--option", "bit_lr=0.01"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "lowest expected cost" in err[0]
    assert not (tmp_path / "cli").exists()


def test_non_finite_loss_names_the_layer_and_writes_no_policy(tmp_path, capsys):
    code = main(["search", LENET, "--method", "sdq", "--budget", "0.4", "--out", str(tmp_path / "cli"),
                 "--no-progress", "--option", "lr=1.0e+30"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code != 0 and len(err) == 1 and "layer" in err[0]
    assert not (tmp_path / "cli").exists()  # a new run directory is not left behind
    run_dir = tmp_path / "run"
    run_dir.mkdir()  # an existing folder stays, without a row or a policy
    with pytest.raises(DivergenceError, match=r"first non-finite in layer (features|classifier)\.\d+"):
        run_search(_config(tmp_path, "run", lr=1e30))
    assert not (run_dir / "best_policy.json").exists()
    assert read_episode_rows(run_dir / "episodes.csv") == []


def test_bad_options_are_one_line_errors(tmp_path, capsys):
    for option in ("relaxation=gumbel", "steps=0", "penalty=-1", "final_temperature=0"):
        code = main(["search", LENET, "--method", "sdq", "--out", str(tmp_path / "x"), "--option", option])
        err = capsys.readouterr().err.strip().splitlines()
        assert code == 2 and len(err) == 1 and option.split("=")[0] in err[0]
    assert not (tmp_path / "x").exists()


def test_expected_cost_is_the_cost_table_price_of_a_sure_policy():
    """At integer thetas the SDQ distribution is one width per layer: the expected cost is
    exactly the cost table's price of that policy (the lookup every method uses)."""
    from haq_rl.search.sdq_relax import BitRelaxation
    from haq_rl.task import load_task
    from haq_rl.task.budget import cost_ratio

    task = load_task(LENET)
    table = task.cost_table.objective("size")
    reference = cost_ratio(task.cost_table, "size", np.full(5, 8), np.full(5, 8))
    budget = 0.5 * task.cost_table.policy_cost(np.full(5, 8), np.full(5, 8), "size")
    relax = BitRelaxation(task, "sdq", [(table, budget)])
    w = np.array([8, 3, 5, 2, 8])
    with torch.no_grad():
        relax.bit_params[0] = torch.tensor(w, dtype=torch.float32)
    expected = float(relax.expected_costs(1.0)[0].detach()) * budget
    assert reference == pytest.approx(1.0)
    assert expected == pytest.approx(task.cost_table.policy_cost(w, np.full(5, 8), "size"), rel=1e-5)
    assert relax.rounded(1.0)[0].tolist() == [8, 3, 5, 2, 8]
