"""Where haq-rl caches pretrained float checkpoints and other derived files, and the one
lock that keeps two processes from computing the same cache entry twice."""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator
from pathlib import Path

logger = logging.getLogger(__name__)


def cache_dir(*parts: str) -> Path:
    """``$HAQ_RL_CACHE`` (default ``~/.cache/haq_rl``) joined with ``parts``, created."""
    root = Path(os.environ.get("HAQ_RL_CACHE", Path.home() / ".cache" / "haq_rl"))
    path = root.joinpath(*parts)
    path.mkdir(parents=True, exist_ok=True)
    return path


@contextlib.contextmanager
def cache_lock(path: Path, doing: str) -> Iterator[None]:
    """Hold an exclusive lock (POSIX flock) on ``path`` while computing one cache entry.

    ``doing`` says what the holder computes ("training mobilenetv2"). The holder writes its
    PID and ``doing`` into the lock file, so a second process that has to wait says, in one
    warning, whom it waits for, and in another when it goes on (a silent wait of minutes
    looks like a hang). The lock file stays: removing it would race with a waiter.
    """
    try:
        import fcntl
    except ImportError:  # Windows: no lock; the atomic rename still keeps files whole
        yield
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            logger.warning("waiting for %s (lock %s)", holder, path)
            fcntl.flock(handle, fcntl.LOCK_EX)
            logger.warning("lock %s released; going on", path)
        try:
            handle.seek(0)
            handle.truncate()
            handle.write(f"PID {os.getpid()}, which is {doing}\n")
            handle.flush()
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
