"""K-means weight sharing: level counts, determinism, projection after an optimizer step."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from haq_rl.errors import PolicyError
from haq_rl.quant import KMeansState, kmeans_1d, kmeans_project_, kmeans_quantize_


@pytest.mark.parametrize("bits", [1, 2, 3, 4, 5])
def test_levels_and_error(bits: int) -> None:
    torch.manual_seed(0)
    layer = nn.Conv2d(8, 16, 3)
    orig = layer.weight.detach().clone()
    state = kmeans_quantize_(layer, bits)
    assert isinstance(state, KMeansState)
    assert layer.weight.detach().unique().numel() <= 2 ** bits
    assert state.num_clusters <= 2 ** bits
    assert torch.equal(layer.weight.detach(), state.centroids[state.assignments])
    # cluster means beat the equally spaced grid over the same range
    lin = torch.linspace(float(orig.min()), float(orig.max()), 2 ** bits)
    grid = lin[(orig.reshape(-1, 1) - lin).abs().argmin(1)].reshape(orig.shape)
    assert (layer.weight.detach() - orig).pow(2).mean() <= (grid - orig).pow(2).mean() + 1e-9


def test_error_decreases_with_bits() -> None:
    torch.manual_seed(0)
    w = torch.randn(32, 16, 3, 3)
    errs = []
    for bits in range(1, 7):
        c, a = kmeans_1d(w, bits)
        errs.append(float((c[a] - w).pow(2).mean()))
    assert all(x > y for x, y in zip(errs, errs[1:], strict=False)), errs


def test_deterministic() -> None:
    w = torch.randn(300)
    c1, a1 = kmeans_1d(w, 3)
    c2, a2 = kmeans_1d(w.clone(), 3)
    assert torch.equal(c1, c2) and torch.equal(a1, a2)


def test_project_after_step_keeps_shared_values() -> None:
    torch.manual_seed(0)
    layer = nn.Linear(20, 10)
    state = kmeans_quantize_(layer, 2)
    opt = torch.optim.SGD(layer.parameters(), lr=0.1)
    layer(torch.randn(4, 20)).pow(2).sum().backward()
    opt.step()
    assert layer.weight.detach().unique().numel() > 4  # the step broke the sharing
    centroids = kmeans_project_(layer, state)
    assert layer.weight.detach().unique().numel() <= 4
    assert torch.equal(layer.weight.detach(), centroids[state.assignments])
    kmeans_project_(layer, state.assignments)  # plain assignments work too
    with pytest.raises(PolicyError, match="do not match"):
        kmeans_project_(layer, state.assignments[:2])


def test_bad_bits() -> None:
    with pytest.raises(PolicyError, match="1..16 bits"):
        kmeans_1d(torch.randn(10), 0)
