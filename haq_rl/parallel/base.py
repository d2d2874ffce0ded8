"""The pool interface both backends implement, and the one check of the parallel settings."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from haq_rl.errors import (
    ConfigError,
    HaqError,
    MissingDependencyError,
    UnknownNameError,
    check_integer,
)

if TYPE_CHECKING:
    from haq_rl.task.evaluator import PolicyScores

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
    check_integer("workers", workers, 1)
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
