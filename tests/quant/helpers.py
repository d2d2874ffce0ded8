"""Tiny models and data shared by the quant tests (no dependency on haq_rl.models)."""

from __future__ import annotations

import torch
from torch import nn


def tiny_cnn(seed: int = 0) -> nn.Module:
    """Conv-BN-ReLU, depthwise conv, ReLU6, residual-free Linear head: 4 quantizable layers."""
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
        nn.Conv2d(8, 8, 3, padding=1, groups=8), nn.ReLU6(),
        nn.Conv2d(8, 16, 1), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        nn.Linear(16, 10),
    ).eval()


def calib_batches(n: int = 4, batch: int = 16, seed: int = 1) -> list[torch.Tensor]:
    """Signed (normalised-image-like) input batches."""
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(batch, 1, 12, 12, generator=g) for _ in range(n)]
