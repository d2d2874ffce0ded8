"""Where haq-rl caches pretrained float checkpoints and other derived files, and the one
lock that keeps two processes from computing the same cache entry twice."""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

from haq_rl.errors import ConfigError, UnsafeFileError
from haq_rl.fileio import atomic_write, check_real_folder, open_regular

logger = logging.getLogger(__name__)


def cache_dir(*parts: str) -> Path:
    """``$HAQ_RL_CACHE`` (default ``~/.cache/haq_rl``) joined with ``parts``, created.

    The root may be a link (the user's choice of where the cache lives); a folder inside it
    may not (UnsafeFileError): haq-rl would write through it, outside the cache.
    """
    root = Path(os.environ.get("HAQ_RL_CACHE", Path.home() / ".cache" / "haq_rl"))
    path = root.joinpath(*parts)
    for depth in range(1, len(parts) + 1):
        check_real_folder(root.joinpath(*parts[:depth]))
    for folder in (root, *root.parents):  # a broken link on the way: mkdir's message would blame "a file"
        if folder.is_symlink() and not folder.exists():
            raise ConfigError(f"cache folder {path} cannot be made: {folder} is a broken link to "
                              f"{os.readlink(folder)} (HAQ_RL_CACHE={root})")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except FileExistsError:  # a file in the way (mkdir's own message names no culprit)
        raise ConfigError(f"cache folder {path} cannot be made: a file stands in its way "
                          f"(HAQ_RL_CACHE={root})") from None
    except OSError as error:
        if not path.is_dir():  # a complete read-only cache is fine: it already exists
            raise ConfigError(f"cache folder {path} cannot be made ({error.strerror}); set HAQ_RL_CACHE "
                              "to a writable folder") from None
    return path


def write_cache_entry(path: Path, write: Callable[[IO[bytes]], Any]) -> bool:
    """Write one cache entry atomically; True when it was written. The cache is optional: a
    full disk, a read-only or otherwise unusable cache is one warning naming the file, and
    the command goes on with what it computed (it is computed again next time)."""
    try:
        atomic_write(path, write)
    except (OSError, UnsafeFileError) as error:
        reason = getattr(error, "strerror", None) or str(error)
        logger.warning("could not cache %s (%s); going on without caching it", path, reason)
        return False
    return True


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
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        # Never through a link (UnsafeFileError, not an OSError: refused, not skipped).
        handle = open_regular(path, "a+", encoding="utf-8", errors="replace")
    except OSError:
        # A read-only (shared) cache: nobody computes into it, so there is nothing to wait
        # for; a missing entry fails before any work (see get_pretrained).
        yield
        return
    with handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            lines = handle.read(200).strip().splitlines()
            holder = ("".join(c for c in lines[0] if c.isprintable()) if lines else "") or "another process"
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
