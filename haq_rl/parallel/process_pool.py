"""``--backend process``: worker processes on this machine (``concurrent.futures``)."""

from __future__ import annotations

import ctypes
import multiprocessing
import os
import signal
import sys
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import TYPE_CHECKING, Any

import numpy as np

from haq_rl.parallel.base import WorkerError
from haq_rl.parallel.payload import (
    evaluate,
    evaluator_payload,
    load_evaluator,
    worker_copy,
    worker_devices,
)

if TYPE_CHECKING:
    from haq_rl.task.evaluator import PolicyEvaluator, PolicyScores

#: prctl option: the signal a process gets when its parent dies (linux/prctl.h).
_PR_SET_PDEATHSIG = 1

# The evaluator of this worker process (set by _start_worker).
_EVALUATOR: PolicyEvaluator | None = None


def _start_worker(payload: bytes | PolicyEvaluator, devices: Any, parent: int) -> None:
    global _EVALUATOR
    # A forked worker inherits the CLI's SIGTERM handler (haq_rl.cli): the pool ends its
    # workers with SIGTERM, which must end them, not raise inside them.
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    _die_with(parent)
    # One torch thread: N workers use N cores, and a forked child cannot use the parent's
    # OpenMP pool (its first parallel op would hang).
    _EVALUATOR = load_evaluator(payload, devices.get(), threads=1)


def _die_with(parent: int) -> None:
    """Let the kernel kill this worker when the search process dies (Linux), even by kill -9.

    An orphaned worker would go on holding a core and its memory (the run directory's lock
    it does not keep: :mod:`haq_rl.run.lock` closes it in forked children).
    """
    if not sys.platform.startswith("linux"):
        return
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:  # the search died before prctl took effect
        os._exit(1)


def _evaluate(policy: tuple[np.ndarray, np.ndarray]) -> PolicyScores:
    assert _EVALUATOR is not None, "worker not started"
    return evaluate(_EVALUATOR, policy)


class ProcessPool:
    """``workers`` processes, each with its own evaluator, fed one policy at a time.

    Forked on Linux when the search runs on the CPU: each worker inherits the evaluator
    (its own copy-on-write copy; nothing is serialized, so a lambda metric works too).
    Spawned otherwise, since CUDA does not survive a fork: the evaluator then travels as
    bytes. Each worker takes one device from a queue: the GPUs round-robin, or the CPU.
    """

    def __init__(self, evaluator: PolicyEvaluator, workers: int) -> None:
        self.workers = workers
        device = evaluator.device
        fork = device.type == "cpu" and sys.platform.startswith("linux")
        payload = worker_copy(evaluator) if fork else evaluator_payload(evaluator)
        context = multiprocessing.get_context("fork" if fork else "spawn")
        devices = context.SimpleQueue()
        for name in worker_devices(device, workers):
            devices.put(name)
        self._executor = ProcessPoolExecutor(max_workers=workers, mp_context=context,
                                             initializer=_start_worker, initargs=(payload, devices, os.getpid()))

    def evaluate(self, policies: Sequence[tuple[np.ndarray, np.ndarray]]) -> list[PolicyScores]:
        try:
            # map keeps the input order whichever worker finishes first.
            return list(self._executor.map(_evaluate, policies))
        except BrokenProcessPool as error:
            raise WorkerError(f"an evaluation worker process died ({error})") from None

    def close(self) -> None:
        self._executor.shutdown(wait=True, cancel_futures=True)
