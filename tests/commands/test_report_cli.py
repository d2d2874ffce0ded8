"""``haq-rl report``: writes the report, compares runs, and bad input exits 2 with one line."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.test_report import PNG_MAGIC, make_runs


@pytest.fixture(scope="session")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    # Same folder as tests/test_report.py's fixture: make_runs is cached, so the two tiny
    # searches run once per session whichever module asks first.
    return make_runs(tmp_path_factory.getbasetemp() / "report-runs")


def _main(argv: list[str]) -> int:
    from haq_rl.cli import main

    return main(argv)


def test_report_one_run(runs, tmp_path, capsys):
    code = _main(["report", str(runs["size"]), "--out", str(tmp_path / "out")])
    assert code == 0
    out = capsys.readouterr().out
    assert str(tmp_path / "out" / "report.md") in out
    assert (tmp_path / "out" / "report" / "curve.png").read_bytes()[:8] == PNG_MAGIC


def test_report_several_runs_default_out(runs, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    code = _main(["report", str(runs["size"]), str(runs["latency"])])
    assert code == 0
    reports = list((tmp_path / "reports").glob("compare-*/report.md"))
    assert len(reports) == 1
    assert "size-random vs edge-uniform" in reports[0].read_text()


@pytest.mark.parametrize("damage, expected", [
    ("best_policy.json", "best_policy.json"),
    ("config.json", "config.json"),
    ("file", "not a run directory"),
    ("missing", "not found"),
])
def test_bad_run_dir_exit_2(runs, tmp_path, capsys, damage, expected):
    if damage == "file":
        target = tmp_path / "episodes.csv"
        target.write_text("x\n")
    elif damage == "missing":
        target = tmp_path / "nowhere"
    else:
        target = tmp_path / "run"
        shutil.copytree(runs["size"], target)
        (target / damage).unlink()
    code = _main(["report", str(target), "--out", str(tmp_path / "out")])
    assert code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert err.startswith("haq-rl report: error:") and expected in err


def test_report_needs_a_run_dir(capsys):
    with pytest.raises(SystemExit) as exit_info:
        _main(["report"])
    assert exit_info.value.code == 2
