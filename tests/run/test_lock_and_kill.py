"""Reliability of run directories: one writer at a time, and no partial files after kill -9."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from haq_rl.cli import main
from haq_rl.errors import RunLockedError
from haq_rl.finetune import load_finetuned
from haq_rl.run.episodes import read_episode_rows
from haq_rl.run.layout import CONFIG_FILE, EPISODES_FILE, LOCK_FILE, METRICS_FILE, REPORT_FILE
from haq_rl.run.lock import run_lock

LENET_ID = "haq_rl/LeNet5Size-v1"
HAQ_RL = [sys.executable, "-m", "haq_rl"]


def _start(args: list[str]) -> subprocess.Popen:
    return subprocess.Popen([*HAQ_RL, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})


def _wait_for_lock(run_dir: Path, process: subprocess.Popen, timeout_s: float = 120.0) -> None:
    """Until ``process`` holds the lock of ``run_dir`` (it writes its pid into the lock file)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        lock = run_dir / LOCK_FILE
        if lock.is_file() and lock.read_text().strip():
            return
        if process.poll() is not None:
            raise AssertionError(f"process ended early: {process.communicate()[1][-2000:]}")
        time.sleep(0.05)
    raise AssertionError(f"{run_dir} was never locked")


def test_lock_refuses_a_second_holder(tmp_path):
    with run_lock(tmp_path / "run"):
        with pytest.raises(RunLockedError, match="is in use by haq-rl process"):
            with run_lock(tmp_path / "run"):
                pass
    with run_lock(tmp_path / "run"):  # released: free again
        pass


def test_two_concurrent_searches_on_one_run_directory(tmp_path, capsys):
    out = tmp_path / "run"
    first = _start(["search", LENET_ID, "--method", "random", "--episodes", "200", "--out", str(out),
                    "--no-progress"])
    try:
        _wait_for_lock(out, first)
        code = main(["search", LENET_ID, "--method", "random", "--episodes", "200", "--out", str(out),
                     "--no-progress"])
        err = capsys.readouterr().err.strip().splitlines()
        assert code == 2 and len(err) == 1 and "is in use by haq-rl process" in err[0], err
    finally:
        assert first.wait(timeout=300) == 0, first.communicate()[1][-2000:]
    rows = read_episode_rows(out / EPISODES_FILE)
    assert [int(row["episode"]) for row in rows] == list(range(200))  # every episode once


def _finished_run(tmp_path: Path) -> Path:
    out = tmp_path / "run"
    assert main(["search", LENET_ID, "--method", "random", "--episodes", "6", "--out", str(out),
                 "--no-progress"]) == 0
    return out


def _visible_or_temp(run_dir: Path) -> set[str]:
    return {path.name for path in run_dir.iterdir() if path.name != LOCK_FILE}


def test_kill_during_finetune_then_rerun(tmp_path):
    run_dir = _finished_run(tmp_path)
    before = _visible_or_temp(run_dir)
    process = _start(["finetune", str(run_dir), "--epochs", "1"])
    _wait_for_lock(run_dir, process)
    time.sleep(1.0)  # inside the fine-tunes
    process.send_signal(signal.SIGKILL)
    process.wait()
    # No partial result under a real name: only temporary dot-files may be new, and a
    # metrics.json or finetuned.pt that exists (a late kill) is whole.
    new = {name for name in _visible_or_temp(run_dir) - before if not name.startswith(".")}
    assert new <= {METRICS_FILE, "finetuned.pt"}, new
    if (run_dir / METRICS_FILE).exists():
        json.loads((run_dir / METRICS_FILE).read_text())
    if (run_dir / "finetuned.pt").exists():
        load_finetuned(run_dir / "finetuned.pt")
    assert main(["finetune", str(run_dir), "--epochs", "1"]) == 0
    metrics = json.loads((run_dir / METRICS_FILE).read_text())
    assert any(row["name"] == "searched" for row in metrics["rows"])
    load_finetuned(run_dir / "finetuned.pt")
    assert not [name for name in _visible_or_temp(run_dir) if name.endswith(".tmp")]


def test_kill_during_report_then_rerun(tmp_path):
    run_dir = _finished_run(tmp_path)
    process = _start(["report", str(run_dir)])
    _wait_for_lock(run_dir, process)
    time.sleep(0.5)  # rendering figures
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert not (run_dir / REPORT_FILE).exists() or (run_dir / REPORT_FILE).read_text().strip()
    assert main(["report", str(run_dir)]) == 0
    text = (run_dir / REPORT_FILE).read_text()
    assert "report/bits.png" in text and (run_dir / "report" / "bits.png").stat().st_size > 0
    leftovers = [name for name in _visible_or_temp(run_dir) if name.startswith(".") or name.endswith(".tmp")]
    assert not leftovers, leftovers
    assert (run_dir / CONFIG_FILE).is_file()
