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

import numpy as np
import torch

from haq_rl.task.evaluator import PolicyEvaluator, PolicyScores

logger = logging.getLogger(__name__)

Policy = tuple[np.ndarray, np.ndarray]


def evaluator_payload(evaluator: PolicyEvaluator) -> bytes:
    """The evaluator as bytes for the workers: no memo, no pool, counters at zero."""
    shipped = copy.copy(evaluator)  # shallow: shares the model and tensors, serialized below
    shipped._memo = {}
    shipped._prefetched = set()
    shipped.pool = None
    shipped.evaluations = 0
    shipped.cache_hits = 0
    shipped.eval_seconds = 0.0
    buffer = io.BytesIO()
    torch.save(shipped, buffer)
    return buffer.getvalue()


def load_evaluator(payload: bytes, device: str, threads: int) -> PolicyEvaluator:
    """A worker's own evaluator from :func:`evaluator_payload`, every tensor on ``device``."""
    torch.set_num_threads(max(1, threads))
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
