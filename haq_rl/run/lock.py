"""An exclusive lock on a run directory: one writing process at a time.

``haq-rl search``, ``finetune`` and ``report`` hold it while they write; a second process
on the same directory fails at once with :class:`~haq_rl.errors.RunLockedError` (one
line, exit 2) instead of interleaving its rows with the first one's. The lock is an
``flock`` on ``<run>/.lock``: the kernel releases it when the holder exits, even on
``kill -9``, so a stale lock never blocks a rerun.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from haq_rl.errors import RunLockedError
from haq_rl.run.layout import LOCK_FILE

#: The lock descriptors this process holds (see _drop_inherited_locks).
_HELD: set[int] = set()


def _drop_inherited_locks() -> None:
    """A forked child (an evaluation worker, a data loader) closes its copies of the lock
    descriptors: the parent keeps the lock, and once the parent dies (kill -9 included) no
    surviving child holds the run directory locked against a ``--resume``."""
    for handle in _HELD:
        try:
            os.close(handle)
        except OSError:
            pass
    _HELD.clear()


os.register_at_fork(after_in_child=_drop_inherited_locks)


@contextmanager
def run_lock(run_dir: str | os.PathLike[str]) -> Iterator[Path]:
    """Hold the exclusive lock of ``run_dir`` (created if needed) for the ``with`` block."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / LOCK_FILE
    handle = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(handle, 64, 0).decode(errors="replace").strip() or "another process"
            raise RunLockedError(f"run directory {run_dir} is in use by {holder}; wait for it to "
                                 "finish or use another directory") from None
        os.ftruncate(handle, 0)
        os.pwrite(handle, f"haq-rl process {os.getpid()}\n".encode(), 0)
        _HELD.add(handle)
        try:
            yield run_dir
        finally:
            _HELD.discard(handle)
            os.ftruncate(handle, 0)
            fcntl.flock(handle, fcntl.LOCK_UN)
    finally:
        os.close(handle)
