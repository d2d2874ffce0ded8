"""The one loop of the proposing methods (haq_rl.search.loop): every method takes --workers and
--budgets and resumes the same way, and none of them loads gymnasium."""

import subprocess
import sys

import pytest

from haq_rl.cli import main
from haq_rl.run.episodes import read_episode_rows
from haq_rl.search import SearchConfig, run_search
from haq_rl.task.scoring import PolicyScorer
from tests.killing import kill_search_after

LENET = "haq_rl/LeNet5Size-v1"
BUDGETS = (0.35, 0.45, 0.6)
PROPOSERS = ("random", "uniform", "greedy", "hawq", "tpe", "nsga2")
#: Episodes per method: enough for greedy's descent to reach the tightest budget.
EPISODES = {"random": 8, "uniform": 8, "greedy": 24, "hawq": 3, "tpe": 8, "nsga2": 8}
OPTIONS = {"tpe": {"startup_trials": 3}, "nsga2": {"population": 4}}


def _config(tmp_path, name, method, **kwargs):
    return SearchConfig(env=LENET, method=method, episodes=EPISODES[method], options=OPTIONS.get(method, {}),
                        out=str(tmp_path / name), progress=False, **kwargs)


def test_the_proposing_methods_load_no_gymnasium():
    code = ("import sys\n"
            "import haq_rl.search.baselines, haq_rl.search.hawq, haq_rl.search.samplers, haq_rl.search.loop\n"
            "print(sorted(m for m in ('gymnasium', 'stable_baselines3') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


def _cut_and_resume(config, rows):
    """Run ``config``, keep its first ``rows`` rows (as a kill would), resume: the same file."""
    whole = run_search(config)
    log = whole.run_dir / "episodes.csv"
    text = log.read_text()
    log.write_text("".join(text.splitlines(keepends=True)[:rows + 1]))
    resumed = run_search(SearchConfig(progress=False), resume=whole.run_dir)
    assert log.read_text() == text
    return resumed


@pytest.mark.parametrize("workers", [1, 2])
@pytest.mark.parametrize("budgets", [None, BUDGETS], ids=["one-budget", "conditioned"])
@pytest.mark.parametrize("method", PROPOSERS)
def test_every_proposer_resumes_exactly(tmp_path, method, budgets, workers):
    result = _cut_and_resume(_config(tmp_path, "run", method, budgets=budgets, workers=workers), rows=3)
    if budgets is not None:  # every method serves every budget
        assert sorted(result.best_by_budget) == list(BUDGETS)
        for budget, best in result.best_by_budget.items():
            assert best["cost_ratio"] <= budget + 1e-9


def test_nsga2_with_two_workers_evaluates_two_policies_at_a_time(tmp_path, monkeypatch):
    batches = []
    prefetch = PolicyScorer.prefetch

    def counted(self, policies, enforce=True):
        batches.append(len(policies))
        return prefetch(self, policies, enforce)

    monkeypatch.setattr(PolicyScorer, "prefetch", counted)
    result = run_search(_config(tmp_path, "nsga2", "nsga2", workers=2))
    assert batches == [2] * 4 and result.episodes == 8


@pytest.mark.parametrize("method", ["tpe", "greedy"])
def test_tpe_and_greedy_take_budgets(tmp_path, method):
    result = run_search(_config(tmp_path, method, method, budgets=BUDGETS))
    rows = read_episode_rows(result.run_dir / "episodes.csv")
    assert len(rows) == EPISODES[method] and "budget" in rows[0]
    assert sorted(result.best_by_budget) == list(BUDGETS)
    for budget, best in result.best_by_budget.items():
        assert best["cost_ratio"] <= budget + 1e-9
    assert (result.run_dir / "front.csv").is_file()


@pytest.mark.parametrize(("method", "workers"), [("tpe", 1), ("nsga2", 2), ("greedy", 2)])
def test_a_killed_conditioned_search_resumes_exactly(tmp_path, method, workers):
    flags = [LENET, "--method", method, "--budgets", ",".join(map(str, BUDGETS)), "--episodes", "12",
             "--workers", str(workers), *(f"--option={k}={v}" for k, v in OPTIONS.get(method, {}).items()),
             "--no-progress"]
    assert main(["search", *flags, "--out", str(tmp_path / "whole")]) == 0
    killed = tmp_path / "killed"
    assert kill_search_after(flags, killed, rows=4) < 12
    assert main(["search", "--resume", str(killed), "--no-progress"]) == 0
    assert (killed / "episodes.csv").read_bytes() == (tmp_path / "whole" / "episodes.csv").read_bytes()
