"""The choice between the two pool backends (interface: :mod:`haq_rl.parallel.base`)."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from typing import TYPE_CHECKING, cast

from haq_rl.parallel.base import EvaluationPool, check_backend

if TYPE_CHECKING:
    from haq_rl.task.evaluator import PolicyEvaluator, ScoresSource
    from haq_rl.task.sources import RewardSource

logger = logging.getLogger(__name__)


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
                  ray_address: str | None = None, *,
                  source: RewardSource | None = None) -> Iterator[EvaluationPool | None]:
    """``evaluator`` evaluates through a new pool inside the block; the workers stop after it.

    ``source`` is the row of the reward source that built it (:mod:`haq_rl.task.sources`;
    None: a pooled one). A pooled source's evaluator is a :class:`PolicyEvaluator`, which
    the workers copy; one that is not pooled (the predictor reward: microseconds per
    policy) gets no pool: workers would only add the cost of shipping the policies.
    """
    if source is not None and not source.pooled:
        check_backend(workers, backend, ray_address)
        if workers > 1:
            logger.warning("the %s reward evaluates in place: --workers %d is not used", source.name, workers)
        yield None
        return
    pooled = cast("PolicyEvaluator", evaluator)
    pool = open_pool(pooled, workers, backend, ray_address)
    pooled.pool = pool
    try:
        yield pool
    finally:
        pooled.pool = None
        if pool is not None:
            pool.close()
