"""Start a search in its own process and SIGKILL it mid-run (the resume tests share this)."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from haq_rl.run.episodes import read_episode_rows


def kill_search_after(flags: list[str], run_dir: Path, rows: int, timeout_s: float = 300.0) -> int:
    """Run ``haq-rl search FLAGS --out RUN_DIR``, kill -9 it once episodes.csv holds ``rows``
    rows, and return how many rows the killed search left."""
    process = subprocess.Popen([sys.executable, "-m", "haq_rl", "search", *flags, "--out", str(run_dir)],
                               env={**os.environ, "OMP_NUM_THREADS": "1"}, stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE)
    csv_path = run_dir / "episodes.csv"
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if csv_path.exists() and len(read_episode_rows(csv_path)) >= rows:
            break
        if process.poll() is not None:
            pytest.fail(f"search ended early: {process.stderr.read().decode()[-2000:]}")
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)  # forked workers die with it and release the run lock
    process.wait()
    return len(read_episode_rows(csv_path))
