"""``--backend ray``: Ray actors, on this machine or on a cluster (``--ray-address``)."""

from __future__ import annotations

import logging
import socket
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import torch

from haq_rl.errors import ConfigError, HaqError
from haq_rl.parallel.base import WorkerError, import_ray
from haq_rl.parallel.payload import evaluate, load_evaluator

if TYPE_CHECKING:
    from haq_rl.task.evaluator import PolicyScores

logger = logging.getLogger(__name__)


def _check_reachable(address: str | None, timeout_s: float = 5.0) -> None:
    """Fail in seconds on a ``host:port`` or ``ray://host:port`` nobody listens on (``ray.init``
    would retry for minutes); ``auto`` and a local start need no check."""
    if not address or address == "auto" or address.startswith("local"):
        return
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit():
        raise ConfigError(f"ray_address={address!r} must be auto, host:port or ray://host:port")
    try:
        socket.create_connection((host, int(port)), timeout=timeout_s).close()
    except OSError as error:
        raise ConfigError(f"cannot reach the Ray cluster at ray_address={address!r}: {error}") from None


class EvaluatorActor:
    """One Ray worker: its own evaluator, on the GPU Ray assigned it or on one CPU."""

    def __init__(self, payload: bytes, device: str) -> None:
        self._evaluator = load_evaluator(payload, device, threads=1)

    def evaluate(self, policy: tuple[np.ndarray, np.ndarray]) -> PolicyScores:
        return evaluate(self._evaluator, policy)


class RayPool:
    """``workers`` :class:`EvaluatorActor`\\ s fed through Ray's ActorPool (results in input order).

    Joins the Ray instance this process already runs (e.g. a test's ``ray.init(num_cpus=2)``),
    else connects to ``address`` (a cluster; ``auto``: the one this node belongs to) or
    starts a private local one, which it stops on close.
    A CUDA search asks Ray for one GPU per actor; Ray then shows each actor only its own GPU.
    """

    def __init__(self, payload: bytes, workers: int, device: torch.device, address: str | None) -> None:
        ray = import_ray()
        from ray.util import ActorPool

        self.workers = workers
        self._ray = ray
        self._started = False
        # An address nobody listens on is an error even when this process already runs a Ray
        # instance (which would otherwise be joined silently: the test suite in random order
        # found a search that asked for 127.0.0.1:1 and ran on a local instance).
        _check_reachable(address)
        if not ray.is_initialized():
            try:
                # No address: a private local instance ("local"), never a cluster Ray would guess
                # from RAY_ADDRESS or from the marker a killed `ray start` leaves behind.
                ray.init(address=address or "local", include_dashboard=False, logging_level=logging.WARNING,
                         log_to_driver=False)
            except ConnectionError as error:
                raise ConfigError(f"cannot connect to the Ray cluster at ray_address={address!r}: {error}") from None
            self._started = True
        gpu = device.type == "cuda"
        actor = ray.remote(EvaluatorActor).options(num_cpus=1, num_gpus=1 if gpu else 0)
        shared = ray.put(payload)  # one copy in the object store, read by every actor
        self._actors = [actor.remote(shared, "cuda" if gpu else "cpu") for _ in range(workers)]
        self._pool = ActorPool(self._actors)
        logger.info("%d Ray evaluation actor(s) on %s", workers, "GPUs" if gpu else "CPUs")

    def evaluate(self, policies: Sequence[tuple[np.ndarray, np.ndarray]]) -> list[PolicyScores]:
        try:
            return list(self._pool.map(lambda actor, policy: actor.evaluate.remote(policy), list(policies)))
        except self._ray.exceptions.RayError as error:
            cause = getattr(error, "cause", None)
            if isinstance(cause, HaqError):  # our own error inside the actor: the same one-liner
                raise cause from None
            raise WorkerError(f"a Ray evaluation actor failed: {str(error).splitlines()[0]}") from None

    def close(self) -> None:
        for actor in self._actors:
            self._ray.kill(actor)
        self._actors = []
        if self._started:
            self._ray.shutdown()
