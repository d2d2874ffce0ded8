"""Several budgets: a budget-conditioned search (``--budgets``) and joint constraints
(``--objective a,b --budget x,y``), on LeNet-5 (seconds per run)."""

import csv
import io

import gymnasium as gym
import numpy as np
import pytest

import haq_rl.env  # noqa: F401  (registers the envs)
from haq_rl.cli import main
from haq_rl.errors import BudgetError, ConfigError
from haq_rl.quant import QuantPolicy
from haq_rl.report import load_run, write_report
from haq_rl.run.episodes import read_episode_rows
from haq_rl.run.load import cost_table_for
from haq_rl.search import SearchConfig, budget_policy, run_search
from haq_rl.task.budget import cost_ratio
from tests.killing import kill_search_after

LENET = "haq_rl/LeNet5Size-v1"
BUDGETS = (0.35, 0.45, 0.6)
#: One conditioned guided run: 3 warm starts, 10 learning episodes, 3 final rollouts.
SEARCH_ARGS = [LENET, "--budgets", ",".join(map(str, BUDGETS)), "--episodes", "16", "--checkpoint-every", "4",
               "--agent", "warmup_episodes=4", "--no-progress"]


@pytest.fixture(scope="module")
def conditioned_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("conditioned") / "run"
    assert main(["search", *SEARCH_ARGS, "--out", str(out)]) == 0
    return out


def _ratio(run_dir, w_bits, a_bits, objective="size"):
    return cost_ratio(cost_table_for(load_run(run_dir)), objective, np.asarray(w_bits), np.asarray(a_bits))


def test_conditioned_run_writes_a_within_budget_policy_per_budget(conditioned_run):
    rows = read_episode_rows(conditioned_run / "episodes.csv")
    assert len(rows) == 16 and {float(r["budget"]) for r in rows} == set(BUDGETS)
    assert [(r["phase"], float(r["budget"])) for r in rows[:3]] == [("warm-start", b) for b in BUDGETS]
    assert [(r["phase"], float(r["budget"])) for r in rows[-3:]] == [("final", b) for b in BUDGETS]
    layers = load_run(conditioned_run).layers
    front = list(csv.DictReader(io.StringIO((conditioned_run / "front.csv").read_text())))
    assert [float(r["budget"]) for r in front] == list(BUDGETS)
    for budget, front_row in zip(BUDGETS, front, strict=True):
        policy = QuantPolicy.from_json(conditioned_run / f"budget-{budget:g}" / "best_policy.json")
        assert policy.metadata["budget"] == budget
        assert _ratio(conditioned_run, policy.w_bits, policy.a_bits) <= budget + 1e-9
        # Shared evaluations: the best of every row within the budget, whatever budget its episode ran at.
        within = [r for r in rows if float(r["cost_ratio"]) <= budget + 1e-9]
        best = max(within, key=lambda r: float(r["reward"]))
        assert int(front_row["episode"]) == int(best["episode"])
        assert policy.w_bits.tolist() == [int(best[f"w:{n}"]) for n in layers]


def test_unsearched_budget_is_served_by_the_actor(conditioned_run):
    path = budget_policy(conditioned_run, 0.5)
    policy = QuantPolicy.from_json(path)
    assert policy.metadata["method"] == "guided actor" and policy.metadata["budget"] == 0.5
    assert _ratio(conditioned_run, policy.w_bits, policy.a_bits) <= 0.5 + 1e-9
    stamp = path.stat().st_mtime_ns
    assert budget_policy(conditioned_run, 0.5) == path and path.stat().st_mtime_ns == stamp  # reused
    with pytest.raises(BudgetError, match="0.1"):
        budget_policy(conditioned_run, 0.1)  # below the minimum achievable size


def test_finetune_evaluate_and_report_pick_a_budget(conditioned_run, capsys):
    assert main(["finetune", str(conditioned_run), "--budget", "0.45", "--epochs", "1", "--no-progress"]) == 0
    metrics = (conditioned_run / "budget-0.45" / "metrics.json").read_text()
    assert '"budget": 0.45' in metrics and '"budgets": []' in metrics
    assert main(["evaluate", str(conditioned_run), "--budget", "0.6", "--json"]) == 0
    assert '"within_budget": true' in capsys.readouterr().out
    assert main(["finetune", str(conditioned_run), "--no-progress"]) == 2
    assert "pick one with --budget" in capsys.readouterr().err
    report = write_report(conditioned_run).read_text()
    assert "## Best policy per budget" in report and (conditioned_run / "report" / "front.png").is_file()
    front = (conditioned_run / "report" / "front.csv").read_text().splitlines()
    assert len(front) == 4 and "test_accuracy" in front[0]
    assert front[2].split(",")[0] == "0.45" and front[2].split(",")[-3] != ""  # fine-tuned row filled


def test_resume_after_kill_is_exact(conditioned_run, tmp_path):
    killed = tmp_path / "killed"
    assert 10 <= kill_search_after(SEARCH_ARGS, killed, rows=10, timeout_s=120) < 16
    assert main(["search", "--resume", str(killed), "--no-progress"]) == 0
    # The same rows, byte for byte, as the run that was never interrupted.
    assert (killed / "episodes.csv").read_text() == (conditioned_run / "episodes.csv").read_text()
    assert (killed / "front.csv").read_text() == (conditioned_run / "front.csv").read_text()


def test_budget_conditioned_env_shows_and_walls_the_episode_budget():
    env = gym.make(LENET, budgets=(0.4, 0.6)).unwrapped
    assert env.observation_space.shape == (14,)
    observation, _ = env.reset(options={"budget": 0.5})
    assert observation[-1] == pytest.approx(0.5)
    info = {}
    for _ in range(env.steps_per_episode):
        _, _, _, _, info = env.step(np.ones(1, dtype=np.float32))  # 8 bits everywhere: the wall cuts
    assert info["budget_ratio"] == 0.5 and info["cost_ratio"] <= 0.5 + 1e-9
    env.episode_index = 0
    schedule = [env.reset()[0][-1] for _ in range(4)]
    assert sorted(schedule[:2]) == pytest.approx([0.4, 0.6]) and sorted(schedule[2:]) == pytest.approx([0.4, 0.6])


@pytest.mark.parametrize("method", ["random", "greedy", "hawq"])
def test_joint_constraints_hold_for_every_evaluated_policy(tmp_path, method):
    out = tmp_path / method
    assert main(["search", LENET, "--method", method, "--objective", "size,bops", "--budget", "0.5,0.45",
                 "--episodes", "12", "--out", str(out), "--no-progress"]) == 0
    rows = read_episode_rows(out / "episodes.csv")
    layers = load_run(out).layers
    for row in rows if method != "greedy" else rows[-1:]:  # greedy walks down from 8/8 unwalled
        w = [int(row[f"w:{n}"]) for n in layers]
        a = [int(row[f"a:{n}"]) for n in layers]
        assert _ratio(out, w, a, "size") <= 0.5 + 1e-9
        assert _ratio(out, w, a, "bops") <= 0.45 + 1e-9
        assert float(row["ratio:bops"]) == pytest.approx(_ratio(out, w, a, "bops"))
    policy = QuantPolicy.from_json(out / "best_policy.json")
    assert policy.metadata["extra_budgets"] == {"bops": 0.45}
    assert policy.metadata["metrics"]["bops_ratio"] <= 0.45 + 1e-9


@pytest.mark.parametrize(("flags", "message"), [
    (["--budgets", "0.5,0.4"], "budgets entry 0.4 comes after 0.5"),
    (["--budgets", "0.4,0.4"], "budgets entry 0.4 appears twice"),
    (["--budgets", "0.4,1.5"], "budgets entry=1.5 must be a number in (0, 1]"),
    (["--budgets", "0.4,abc"], "--budgets entry 'abc' is not a number"),
    (["--budgets", "0.2,0.5"], "budgets entry 0.2: budget 0.2 of the 8/8 size is infeasible"),
    (["--budgets", "0.4,0.5", "--budget", "0.5"], "either budget (one) or budgets"),
    (["--budget", "0.4,0.5"], "lists 2 ratios for one objective; for several budgets of one objective use --budgets"),
    (["--objective", "size,bops", "--budget", "0.5"], "give one --budget ratio for each"),
    (["--objective", "size,size", "--budget", "0.5,0.5"], "'size' is constrained twice"),
    (["--objective", "size,speed", "--budget", "0.5,0.5"], "speed"),
])
def test_bad_budget_lists_give_one_line_naming_the_entry(tmp_path, capsys, flags, message):
    code = main(["search", LENET, *flags, "--episodes", "4", "--out", str(tmp_path / "x"), "--no-progress"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and message in err and len(err.splitlines()) == 1, err
    assert not (tmp_path / "x").exists()


def test_library_errors_are_typed(tmp_path):
    with pytest.raises(ConfigError, match="budgets entry 0.3 comes after 0.6"):
        SearchConfig(env=LENET, budgets=(0.6, 0.3))
    single = run_search(SearchConfig(env=LENET, method="uniform", episodes=1, out=str(tmp_path / "u"),
                                     progress=False))
    with pytest.raises(ConfigError, match="searched one budget"):
        budget_policy(single.run_dir, 0.4)


def test_peers_serve_every_budget(tmp_path):
    hawq = run_search(SearchConfig(env=LENET, method="hawq", budgets=BUDGETS, episodes=5,
                                   out=str(tmp_path / "hawq"), progress=False))
    rows = read_episode_rows(hawq.run_dir / "episodes.csv")
    assert [float(r["budget"]) for r in rows] == list(BUDGETS)  # one integer program per budget
    assert all(float(r["cost_ratio"]) <= float(r["budget"]) + 1e-9 for r in rows)
    nsga2 = run_search(SearchConfig(env=LENET, method="nsga2", budgets=BUDGETS, episodes=8,
                                    options={"population": 4}, out=str(tmp_path / "nsga2"), progress=False))
    assert sorted(nsga2.best_by_budget) == list(BUDGETS)
    rows = read_episode_rows(nsga2.run_dir / "episodes.csv")
    assert len(rows) == 8 and all(float(r["cost_ratio"]) <= float(r["budget"]) + 1e-9 for r in rows)
    for budget, best in nsga2.best_by_budget.items():
        assert best["cost_ratio"] <= budget + 1e-9


def test_guided_with_budgets_and_two_workers_resumes_exactly(tmp_path):
    from haq_rl.task.conditioned import scheduled_budget

    flags = [*SEARCH_ARGS, "--workers", "2"]
    whole = tmp_path / "whole"
    assert main(["search", *flags, "--out", str(whole)]) == 0
    rows = read_episode_rows(whole / "episodes.csv")
    assert [r["phase"] for r in rows] == ["warm-start"] * 3 + ["warm-up"] * 4 + ["explore"] * 6 + ["final"] * 3
    # Each learning episode runs under the schedule's budget of its index, whichever worker ran it.
    assert [float(r["budget"]) for r in rows[3:13]] == [scheduled_budget(BUDGETS, 0, k) for k in range(3, 13)]
    killed = tmp_path / "killed"
    assert kill_search_after(flags, killed, rows=8) < 16
    assert main(["search", "--resume", str(killed), "--no-progress"]) == 0
    assert (killed / "episodes.csv").read_bytes() == (whole / "episodes.csv").read_bytes()
