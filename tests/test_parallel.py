"""Parallel evaluation workers (--workers, --backend process|ray): the same rows as one worker,
exact resume after kill -9, one-line errors."""

import importlib.util
import sys

import pytest

from haq_rl.cli import main
from haq_rl.errors import ConfigError, MissingDependencyError, UnknownNameError
from haq_rl.run.episodes import read_episode_rows
from haq_rl.search import SearchConfig, run_search
from tests.killing import kill_search_after

LENET = "haq_rl/LeNet5Size-v1"
BUDGET = 0.4


def _run(tmp_path, name, **kwargs):
    config = SearchConfig(env=LENET, out=str(tmp_path / name), progress=False, checkpoint_every=4, **kwargs)
    result = run_search(config)
    return result, (result.run_dir / "episodes.csv").read_text()


@pytest.fixture(scope="module")
def local_ray():
    """One local Ray instance for the module's Ray tests (the pool joins it, never stops it)."""
    ray = pytest.importorskip("ray")
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


def test_bad_parallel_settings_are_one_line_errors(tmp_path, capsys, monkeypatch):
    with pytest.raises(ConfigError, match="workers=0 must be an integer >= 1"):
        SearchConfig(workers=0)
    with pytest.raises(UnknownNameError, match="unknown backend 'rey': did you mean 'ray'"):
        SearchConfig(backend="rey")
    with pytest.raises(ConfigError, match="ray_address='auto' needs backend 'ray'"):
        SearchConfig(ray_address="auto")
    for flags, expected in ((["--workers", "0"], "workers=0"), (["--backend", "foo"], "backend 'foo'"),
                            (["--ray-address", "auto"], "needs backend 'ray'")):
        assert main(["search", LENET, *flags, "--out", str(tmp_path / "x"), "--no-progress"]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and expected in err
    if importlib.util.find_spec("ray") is not None:  # nobody listens on port 1: fails at once
        assert main(["search", LENET, "--backend", "ray", "--ray-address", "127.0.0.1:1",
                     "--out", str(tmp_path / "no-cluster"), "--no-progress"]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and "cannot reach the Ray cluster" in err
        assert not (tmp_path / "no-cluster").exists()
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray now raises ImportError
    with pytest.raises(MissingDependencyError, match=r"haq-rl\[ray\]"):
        run_search(SearchConfig(env=LENET, backend="ray", out=str(tmp_path / "no-ray"), progress=False))
    assert main(["search", LENET, "--backend", "ray", "--out", str(tmp_path / "y"), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "pip install 'haq-rl[ray]'" in err
    assert not (tmp_path / "no-ray").exists()


def test_process_workers_record_the_rows_of_one_worker(tmp_path):
    for method in ("random", "greedy"):
        one, rows = _run(tmp_path, f"{method}-1", method=method, episodes=12)
        two, rows_two = _run(tmp_path, f"{method}-2", method=method, episodes=12, workers=2)
        assert rows_two == rows and two.evaluations == one.evaluations
    tpe, _ = _run(tmp_path, "tpe-2", method="tpe", episodes=12, workers=2, options={"startup_trials": 4})
    assert tpe.episodes == 12 and tpe.best_cost_ratio <= BUDGET + 1e-9


@pytest.mark.parametrize("backend", ["process", pytest.param("ray", marks=pytest.mark.slow)])
def test_ddpg_with_two_workers_resumes_exactly_after_kill(tmp_path, backend):
    if backend == "ray":
        pytest.importorskip("ray")
    episodes = 20
    flags = [LENET, "--method", "ddpg", "--episodes", str(episodes), "--workers", "2", "--backend", backend,
             "--checkpoint-every", "2", "--agent", "warmup_episodes=8", "--no-progress"]
    run_dir = tmp_path / "killed"
    assert 5 <= kill_search_after(flags, run_dir, rows=5) < episodes  # killed in the warm-up
    csv_path = run_dir / "episodes.csv"
    assert main(["search", "--resume", str(run_dir), "--no-progress"]) == 0
    assert main(["search", *flags, "--out", str(tmp_path / "whole")]) == 0
    rows = read_episode_rows(csv_path)
    assert csv_path.read_text() == (tmp_path / "whole" / "episodes.csv").read_text()  # exact
    assert [r["phase"] for r in rows] == ["warm-up"] * 8 + ["explore"] * 11 + ["final"]
    assert all(float(r["cost_ratio"]) <= BUDGET + 1e-9 for r in rows)


def test_guided_with_two_workers_resumes_exactly_after_kill(tmp_path):
    flags = [LENET, "--episodes", "14", "--workers", "2", "--checkpoint-every", "3", "--agent", "warmup_episodes=4",
             "--option", "probes=2", "--no-progress"]
    assert main(["search", *flags, "--out", str(tmp_path / "whole")]) == 0
    killed = tmp_path / "killed"
    assert kill_search_after(flags, killed, rows=7) < 14
    assert main(["search", "--resume", str(killed), "--no-progress"]) == 0
    assert (killed / "episodes.csv").read_bytes() == (tmp_path / "whole" / "episodes.csv").read_bytes()


def test_ray_workers_record_the_rows_of_process_workers(tmp_path, local_ray):
    _, rows = _run(tmp_path, "random-1", method="random", episodes=12)
    _, rows_ray = _run(tmp_path, "random-ray", method="random", episodes=12, workers=2, backend="ray")
    assert rows_ray == rows
    agent = {"warmup_episodes": 4}
    _, ddpg = _run(tmp_path, "ddpg-2", method="ddpg", episodes=10, workers=2, agent=agent)
    result, ddpg_ray = _run(tmp_path, "ddpg-ray", method="ddpg", episodes=10, workers=2, backend="ray", agent=agent)
    assert ddpg_ray == ddpg and result.best_cost_ratio <= BUDGET + 1e-9
    assert local_ray.is_initialized()  # the pools joined the test's Ray and left it running


def test_deterministic_baselines_resume_exactly(tmp_path):
    for method, episodes in (("uniform", 7), ("greedy", 16)):
        _, rows = _run(tmp_path, f"{method}-whole", method=method, episodes=episodes, workers=2)
        cut = tmp_path / f"{method}-cut"
        _run(tmp_path, f"{method}-cut", method=method, episodes=episodes, workers=2)
        lines = (cut / "episodes.csv").read_text().splitlines(keepends=True)
        (cut / "episodes.csv").write_text("".join(lines[:4]))  # as if killed after 3 rows
        run_search(SearchConfig(progress=False), resume=cut)
        assert (cut / "episodes.csv").read_text() == rows


def test_a_conditioned_rl_run_with_two_workers_prefetches_each_policy_at_its_budget(tmp_path, monkeypatch):
    """Each batch of a conditioned RL run is walled at each episode's own budget before it is
    evaluated in parallel: every recorded policy is evaluated once, inside a batch, and no
    policy walled at another budget is evaluated on the side."""
    from haq_rl.task.evaluator import PolicyEvaluator

    batches: list[int] = []  # policies each evaluator prefetch evaluated
    evaluators = []
    prefetch = PolicyEvaluator.prefetch

    def counted(self, policies):
        before = self.evaluations
        prefetch(self, policies)
        batches.append(self.evaluations - before)
        evaluators.append(self)

    monkeypatch.setattr(PolicyEvaluator, "prefetch", counted)
    # 10 learning episodes (5 batches of 2, budgets from the schedule), then one rollout per budget.
    result, text = _run(tmp_path, "cond-2", method="ddpg", episodes=12, budgets=(0.35, 0.5), workers=2,
                        agent={"warmup_episodes": 4})
    rows = read_episode_rows(result.run_dir / "episodes.csv")
    policies = [tuple(v for k, v in r.items() if k[:2] in ("w:", "a:")) for r in rows]
    distinct = len(set(policies))
    evaluator = evaluators[0]
    assert {id(e) for e in evaluators} == {id(evaluator)}
    assert sorted({float(r["budget"]) for r in rows}) == [0.35, 0.5]
    assert evaluator.evaluations == result.evaluations == distinct  # nothing evaluated that no row shows
    assert evaluator.cache_hits == len(rows) - distinct
    # The learning episodes' policies were evaluated in their 5 batches, not one at a time after.
    assert sum(batches[:5]) == len(set(policies[:10])) and all(n >= 1 for n in batches[:5])
