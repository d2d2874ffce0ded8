"""Start haq-rl in its own process and SIGKILL it mid-run (the resume and fault tests share this)."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from haq_rl.run.episodes import read_episode_rows


def start(args: list[str]) -> subprocess.Popen:
    """``haq-rl ARGS`` in a process of its own, on one torch thread, its stderr kept."""
    return subprocess.Popen([sys.executable, "-m", "haq_rl", *args], env={**os.environ, "OMP_NUM_THREADS": "1"},
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def kill(process: subprocess.Popen) -> None:
    process.send_signal(signal.SIGKILL)  # forked workers die with it and release the run lock
    process.wait()


def kill_search_after(flags: list[str], run_dir: Path, rows: int, timeout_s: float = 300.0) -> int:
    """Run ``haq-rl search FLAGS --out RUN_DIR``, kill -9 it once episodes.csv holds ``rows``
    rows, and return how many rows the killed search left."""
    process = start(["search", *flags, "--out", str(run_dir)])
    csv_path = run_dir / "episodes.csv"
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if csv_path.exists() and len(read_episode_rows(csv_path)) >= rows:
            break
        if process.poll() is not None:
            pytest.fail(f"search ended early: {process.stderr.read().decode()[-2000:]}")
        time.sleep(0.02)
    kill(process)
    return len(read_episode_rows(csv_path))


def kill_after(args: list[str], seconds: float) -> bool:
    """Run ``haq-rl ARGS`` and kill -9 it ``seconds`` after its start; True when it had ended
    by then (it must then have succeeded)."""
    process = start(args)
    try:
        process.wait(timeout=seconds)
    except subprocess.TimeoutExpired:
        kill(process)
        return False
    assert process.returncode == 0, process.stderr.read().decode()[-2000:]
    return True
