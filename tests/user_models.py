"""Models a user brings, by import path (``tests.user_models:small_cnn``)."""

from __future__ import annotations

from torch import nn


def small_cnn(num_classes: int = 10, in_channels: int = 1) -> nn.Module:
    """A plain PyTorch CNN for 28x28 digits (nothing from haq-rl)."""
    return nn.Sequential(
        nn.Conv2d(in_channels, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(32 * 7 * 7, 64), nn.ReLU(),
        nn.Linear(64, num_classes),
    )


class Opaque:
    """Not a tensor: a file holding one needs unpickling code, which weights_only refuses."""
