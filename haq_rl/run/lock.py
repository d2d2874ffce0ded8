"""An exclusive lock on a run directory: one writing process at a time.

``haq-rl search``, ``finetune`` and ``report`` hold it while they write; a second process
on the same directory fails at once with :class:`~haq_rl.errors.RunLockedError` (one
line, exit 2) instead of interleaving its rows with the first one's. The lock is an
``flock`` on ``<run>/.haq-rl.lock``: the kernel releases it when the holder exits, even on
``kill -9``, so a stale lock never blocks a rerun.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from haq_rl.errors import RunLockedError
from haq_rl.fileio import check_writable_folder, open_regular_fd
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
    """Hold the exclusive lock of ``run_dir`` (created if needed) for the ``with`` block.

    The lock file and the folders made for it are removed again on the way out, so a
    command leaves no ``.haq-rl.lock`` (and a failed one no empty folder) behind; a
    ``kill -9`` can leave one, which locks nothing. A link or any non-regular file at that
    name is refused (UnsafeFileError), never opened: a lock through a link would truncate
    or create its target.
    """
    run_dir = Path(run_dir)
    check_writable_folder(run_dir, "output folder")
    made = _missing_folders(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / LOCK_FILE
    try:
        handle = _acquire(path, run_dir)
    except BaseException:
        _remove_empty(made)
        raise
    _HELD.add(handle)
    try:
        yield run_dir
    finally:
        _HELD.discard(handle)
        # Unlink while holding it: a process that opened this file meanwhile sees it is
        # gone once it gets the lock (_acquire) and retries on a new one.
        path.unlink(missing_ok=True)
        fcntl.flock(handle, fcntl.LOCK_UN)
        os.close(handle)
        _remove_empty(made)


def _acquire(path: Path, run_dir: Path) -> int:
    """The descriptor of ``path``, flock-ed, that is still the file at ``path``."""
    while True:
        handle = open_regular_fd(path, os.O_RDWR | os.O_CREAT)  # never through a link
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _printable(os.pread(handle, 64, 0)) or "another process"
            os.close(handle)
            raise RunLockedError(f"run directory {run_dir} is in use by {holder}; wait for it to "
                                 "finish or use another directory") from None
        except BaseException:
            os.close(handle)
            raise
        try:
            current = os.lstat(path).st_ino
        except FileNotFoundError:
            current = None
        if current == os.fstat(handle).st_ino:
            os.ftruncate(handle, 0)
            os.pwrite(handle, f"haq-rl process {os.getpid()}\n".encode(), 0)
            return handle
        os.close(handle)  # the holder removed it as we locked it: lock the new one


def _printable(data: bytes) -> str:
    """The first line of a lock file's text, without control characters: whatever another
    process wrote there goes into a one-line message."""
    lines = data.decode(errors="replace").strip().splitlines()
    return "".join(char for char in lines[0] if char.isprintable()) if lines else ""


def _missing_folders(folder: Path) -> list[Path]:
    """``folder`` and its parents that do not exist yet, deepest first."""
    missing = []
    while not folder.exists() and folder != folder.parent:
        missing.append(folder)
        folder = folder.parent
    return missing


def _remove_empty(folders: list[Path]) -> None:
    for folder in folders:
        try:
            folder.rmdir()
        except OSError:  # not empty (the command wrote its results) or gone
            return
