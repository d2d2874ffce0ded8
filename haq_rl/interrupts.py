"""Ctrl-C and SIGTERM for the command line: recorded at once, raised outside imports.

Python raises KeyboardInterrupt wherever the main thread is when Ctrl-C lands. Inside an
import that leaves a half-initialised module behind (the next use fails with an unrelated
error), and inside torch's import it can abort the process or be swallowed, so the command
runs on. :class:`InterruptWatch` records every signal the moment it arrives and raises
KeyboardInterrupt (:class:`Terminated` for SIGTERM) only once no import is running: a
Ctrl-C during start-up waits for the import under way, then stops the command.

Standard library only: ``python -m haq_rl`` installs the watch before anything else loads.
"""

from __future__ import annotations

import os
import signal
import threading
from types import FrameType, TracebackType
from typing import Any

#: Exit codes of a command stopped by Ctrl-C (SIGINT) and by SIGTERM: 128 + the signal.
INTERRUPTED, TERMINATED = 130, 143

#: How long a signal that landed inside an import waits before it is delivered again.
RETRY_SECONDS = 0.05

_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Terminated(KeyboardInterrupt):
    """SIGTERM (``docker stop``, Slurm, systemd), raised where Ctrl-C would be: the same
    clean-up runs (locks, staging folders, half-made run directories), then exit 143."""


class InterruptWatch:
    """Record Ctrl-C and SIGTERM in :attr:`received`; once :meth:`arm` ed, raise them
    outside imports.

    Until :meth:`arm` nothing is raised (the signals wait, recorded); ``arm`` raises at once
    for a signal that came before it. Used as a context manager it installs its handlers on
    entry and, on exit, ignores further signals when one was received (the process is
    leaving: a second Ctrl-C during shutdown must not turn its exit code into a death by
    signal) or puts the previous handlers back.
    """

    def __init__(self) -> None:
        self.received: list[int] = []
        self._armed = False
        self._previous: tuple[Any, ...] | None = None
        self._retry: threading.Timer | None = None

    def install(self) -> InterruptWatch:
        """Take over SIGINT and SIGTERM; a no-op off the main thread, where Python allows no
        handlers."""
        if self._previous is None and threading.current_thread() is threading.main_thread():
            self._previous = tuple(signal.signal(signum, self._on_signal) for signum in _SIGNALS)
        return self

    def arm(self) -> None:
        """From now on raise; raise at once for a signal received before."""
        self._armed = True
        if self.received:
            raise self._interrupt()

    def uninstall(self) -> None:
        if self._retry is not None:
            self._retry.cancel()
        if self._previous is not None:
            for signum, handler in zip(_SIGNALS, self._previous, strict=True):
                signal.signal(signum, signal.SIG_IGN if self.received else handler)
            self._previous = None

    def __enter__(self) -> InterruptWatch:
        return self.install()

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.uninstall()

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        self.received.append(signum)
        if not self._armed:
            return
        if _inside_import(frame):
            # Deliver it again shortly, from a timer thread: the handler always runs on the
            # main thread, where it finds the import finished or waits once more.
            self._retry = threading.Timer(RETRY_SECONDS, os.kill, (os.getpid(), signum))
            self._retry.daemon = True
            self._retry.start()
            return
        raise self._interrupt()

    def _interrupt(self) -> KeyboardInterrupt:
        return Terminated() if self.received[-1] == signal.SIGTERM else KeyboardInterrupt()


def _inside_import(frame: FrameType | None) -> bool:
    """Whether the main thread is executing an import (importlib's frames are on its stack)."""
    while frame is not None:
        if frame.f_code.co_filename.startswith("<frozen importlib._bootstrap"):
            return True
        frame = frame.f_back
    return False
