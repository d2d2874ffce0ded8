"""The pool interface, its two backends and the choice between them."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from haq_rl.errors import ConfigError, HaqError, MissingDependencyError, UnknownNameError

if TYPE_CHECKING:
    from haq_rl.task.evaluator import PolicyEvaluator, PolicyScores, ScoresSource

logger = logging.getLogger(__name__)

#: ``process``: worker processes on this machine; ``ray``: Ray actors, on this machine or a cluster.
BACKENDS = ("process", "ray")


class WorkerError(HaqError, RuntimeError):
    """A worker failed or died while evaluating a policy."""


class EvaluationPool(Protocol):
    """Evaluates batches of policies in parallel workers."""

    workers: int

    def evaluate(self, policies: Sequence[tuple[np.ndarray, np.ndarray]]) -> list[PolicyScores]:
        """The scores of every policy, in input order."""
        ...

    def close(self) -> None:
        """Stop the workers."""
        ...


def check_backend(workers: object, backend: object, ray_address: object) -> None:
    """The one validation of the parallel settings (SearchConfig and open_pool share it)."""
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ConfigError(f"workers={workers!r} must be an integer >= 1")
    if backend not in BACKENDS:
        raise UnknownNameError("backend", str(backend), BACKENDS)
    if ray_address is not None and backend != "ray":
        raise ConfigError(f"ray_address={ray_address!r} needs backend 'ray' (got backend {backend!r})")


def import_ray() -> Any:
    """Ray, or a one-line error naming the extra that installs it."""
    try:
        import ray
    except ImportError:
        raise MissingDependencyError(
            "backend ray needs Ray: pip install 'haq-rl[ray]' (or pip install ray)") from None
    return ray


def open_pool(evaluator: PolicyEvaluator, workers: int, backend: str = "process",
              ray_address: str | None = None) -> EvaluationPool | None:
    """Start ``workers`` copies of ``evaluator``; None for one local worker (evaluate in place).

    With ``backend="ray"`` a single worker still runs as a Ray actor (e.g. on a cluster's GPU).
    """
    check_backend(workers, backend, ray_address)
    if backend == "process" and workers == 1:
        return None
    from haq_rl.parallel.payload import evaluator_payload

    if backend == "ray":
        from haq_rl.parallel.ray_pool import RayPool

        return RayPool(evaluator_payload(evaluator), workers, evaluator.device, ray_address)
    from haq_rl.parallel.process_pool import ProcessPool

    return ProcessPool(evaluator, workers)


@contextlib.contextmanager
def attached_pool(evaluator: ScoresSource, workers: int, backend: str = "process",
                  ray_address: str | None = None) -> Iterator[EvaluationPool | None]:
    """``evaluator`` evaluates through a new pool inside the block; the workers stop after it.

    An evaluator that is no :class:`PolicyEvaluator` (the predictor reward: microseconds per
    policy) gets no pool: workers would only add the cost of shipping the policies.
    """
    from haq_rl.task.evaluator import PolicyEvaluator

    if not isinstance(evaluator, PolicyEvaluator):
        check_backend(workers, backend, ray_address)
        if workers > 1:
            logger.warning("the predictor reward evaluates in place: --workers %d is not used", workers)
        yield None
        return
    pool = open_pool(evaluator, workers, backend, ray_address)
    evaluator.pool = pool
    try:
        yield pool
    finally:
        evaluator.pool = None
        if pool is not None:
            pool.close()
