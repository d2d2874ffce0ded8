"""K-means weight sharing (Deep Compression style) for the model-size objective.

Each layer's weights share ``2^bits`` values (a per-layer codebook); storage is the
``bits``-bit index per weight plus the codebook. The 1-D k-means is deterministic:
linear initialisation between min and max (Han et al. found it best for keeping the
large, important weights) and a few Lloyd iterations, where assignment is a
``bucketize`` against the midpoints of the sorted centroids (O(N log k), no N x k matrix).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from haq_rl.errors import PolicyError


@dataclass
class KMeansState:
    """Codebook and per-weight cluster index of one layer."""

    bits: int
    centroids: torch.Tensor  # (k,), sorted ascending
    assignments: torch.Tensor  # int64, same shape as the weight

    @property
    def num_clusters(self) -> int:
        return int(self.centroids.numel())


def _assign(flat: torch.Tensor, centroids: torch.Tensor) -> torch.Tensor:
    mids = (centroids[1:] + centroids[:-1]) / 2
    return torch.bucketize(flat, mids)


def _cluster_means(flat: torch.Tensor, assign: torch.Tensor, k: int,
                   fallback: torch.Tensor) -> torch.Tensor:
    sums = torch.zeros(k, dtype=flat.dtype, device=flat.device).index_add_(0, assign, flat)
    counts = torch.bincount(assign, minlength=k).to(flat.dtype)
    # An empty cluster keeps its previous centroid instead of collapsing to 0.
    return torch.where(counts > 0, sums / counts.clamp_min(1), fallback)


@torch.no_grad()
def kmeans_1d(values: torch.Tensor, bits: int, iters: int = 20) -> tuple[torch.Tensor,
                                                                         torch.Tensor]:
    """Cluster ``values`` into at most ``2^bits`` centroids; returns (centroids, assignments)."""
    if not 1 <= bits <= 16:
        raise PolicyError(f"k-means weight sharing needs 1..16 bits, got {bits}")
    flat = values.detach().reshape(-1).to(torch.float32)
    k = min(2 ** bits, max(1, flat.numel()))
    lo, hi = flat.min(), flat.max()
    centroids = torch.linspace(float(lo), float(hi), k, device=flat.device)
    assign = _assign(flat, centroids)
    for _ in range(iters):
        new = _cluster_means(flat, assign, k, centroids)
        new, _ = torch.sort(new)
        new_assign = _assign(flat, new)
        converged = torch.equal(new_assign, assign)
        centroids, assign = new, new_assign
        if converged:
            break
    centroids = _cluster_means(flat, assign, k, centroids)
    return centroids, assign.reshape(values.shape)


@torch.no_grad()
def kmeans_weight(weight: torch.Tensor, bits: int, iters: int = 20) -> tuple[torch.Tensor,
                                                                             KMeansState]:
    """Return the weight replaced by its cluster centroids (new tensor) and the state."""
    centroids, assign = kmeans_1d(weight, bits, iters)
    # empty_like keeps the weight's memory format (e.g. channels-last convolutions).
    shared = torch.empty_like(weight).copy_(centroids[assign])
    return shared, KMeansState(bits=bits, centroids=centroids, assignments=assign)


@torch.no_grad()
def kmeans_quantize_(module: nn.Module, bits: int, iters: int = 20) -> KMeansState:
    """Replace ``module.weight`` in place by ``2^bits`` shared values; returns the state."""
    weight = _weight_of(module)
    shared, state = kmeans_weight(weight, bits, iters)
    weight.copy_(shared)
    return state


@torch.no_grad()
def kmeans_project_(module: nn.Module, assignments: torch.Tensor | KMeansState) -> torch.Tensor:
    """Re-project ``module.weight`` onto its clusters' means, in place; returns the centroids.

    Call after each optimizer step while fine-tuning a k-means layer: the clusters
    (assignments) stay fixed and each shared value becomes the mean of its weights, which
    is the centroid update of Deep Compression (average of the cluster's gradients).
    """
    assign = assignments.assignments if isinstance(assignments, KMeansState) else assignments
    weight = _weight_of(module)
    if assign.shape != weight.shape:
        raise PolicyError(f"k-means assignments of shape {tuple(assign.shape)} do not match "
                          f"the weight of shape {tuple(weight.shape)}")
    flat = weight.reshape(-1)
    a = assign.reshape(-1).to(flat.device)
    k = int(a.max()) + 1
    centroids = _cluster_means(flat, a, k, torch.zeros(k, dtype=flat.dtype, device=flat.device))
    weight.copy_(centroids[a].reshape(weight.shape))
    if isinstance(assignments, KMeansState):
        assignments.centroids = centroids
    return centroids


def _weight_of(module: nn.Module) -> torch.Tensor:
    weight = getattr(module, "weight", None)
    if not isinstance(weight, torch.Tensor):
        raise PolicyError(f"{type(module).__name__} has no weight tensor to quantize")
    return weight
