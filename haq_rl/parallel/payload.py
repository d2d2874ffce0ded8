"""What a worker receives (a serialized evaluator) and what it runs (one evaluation).

The evaluator is shipped as built in the main process, calibration included, rather than
rebuilt from the task in each worker: calibrating MobileNetV2's activations takes ten
seconds on a CPU core, and shared clips and cached weights make every worker's scores
the numbers the main process would compute (the determinism the search relies on).
"""

from __future__ import annotations

import copy
import io
import logging
import pickle

import numpy as np
import torch

from haq_rl.errors import ConfigError
from haq_rl.task.evaluator import PolicyEvaluator, PolicyScores

logger = logging.getLogger(__name__)

Policy = tuple[np.ndarray, np.ndarray]


def worker_copy(evaluator: PolicyEvaluator) -> PolicyEvaluator:
    """A shallow copy of the evaluator for the workers: no memo, no pool, counters at zero."""
    shipped = copy.copy(evaluator)  # shares the model and tensors until serialized or forked
    shipped._memo = {}
    shipped._prefetched = set()
    shipped.pool = None
    shipped.evaluations = 0
    shipped.cache_hits = 0
    shipped.eval_seconds = 0.0
    return shipped


def evaluator_payload(evaluator: PolicyEvaluator) -> bytes:
    """The evaluator as bytes for spawned workers and Ray actors."""
    buffer = io.BytesIO()
    try:
        torch.save(worker_copy(evaluator), buffer)
    except (pickle.PicklingError, AttributeError, TypeError) as error:
        raise ConfigError(
            f"cannot send the evaluator to the workers ({error}): the model and the metric must be "
            "importable (not defined in __main__, not a lambda)") from None
    return buffer.getvalue()


def load_evaluator(payload: bytes | PolicyEvaluator, device: str, threads: int) -> PolicyEvaluator:
    """A worker's own evaluator, every tensor on ``device``: from :func:`evaluator_payload`'s
    bytes, or a :func:`worker_copy` inherited by fork (already this process's own copy)."""
    torch.set_num_threads(max(1, threads))
    if isinstance(payload, PolicyEvaluator):
        return payload
    # Our own bytes from the main process of this search, never a user file: a full unpickle.
    evaluator = torch.load(io.BytesIO(payload), map_location=device, weights_only=False)
    evaluator.device = torch.device(device)
    logger.debug("worker evaluator on %s with %d torch thread(s)", device, threads)
    return evaluator


def evaluate(evaluator: PolicyEvaluator, policy: Policy) -> PolicyScores:
    """One policy's scores (the worker's memo catches a repeat within its lifetime)."""
    return evaluator.scores(*policy)


def worker_devices(device: torch.device, workers: int) -> list[str]:
    """The device of each local worker: round-robin over the GPUs, or the CPU."""
    if device.type != "cuda":
        return [str(device)] * workers
    count = max(torch.cuda.device_count(), 1)
    return [f"cuda:{i % count}" for i in range(workers)]
