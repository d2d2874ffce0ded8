"""LeNet-5 (LeCun et al. 1998) with ReLU and max pooling, sized for any input >= 12 px."""

from __future__ import annotations

import torch
from torch import nn


class LeNet5(nn.Module):
    """conv5x5(6) - pool - conv5x5(16) - pool - fc120 - fc84 - fc(num_classes).

    The classic network expects 32 x 32 inputs; smaller inputs (MNIST's 28 px) get the
    first convolution padded so that the feature maps keep the classic 5 x 5 size.
    """

    def __init__(self, num_classes: int = 10, in_channels: int = 1, input_size: int = 28):
        super().__init__()
        pad = max(0, (32 - input_size) // 2) if input_size < 32 else 0
        side = (input_size + 2 * pad - 4) // 2
        side = (side - 4) // 2
        if side < 1:
            raise ValueError(f"lenet5 needs input_size >= 12, got {input_size}")
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, 6, kernel_size=5, padding=pad),
            nn.BatchNorm2d(6),
            nn.ReLU(inplace=False),
            nn.MaxPool2d(2),
            nn.Conv2d(6, 16, kernel_size=5),
            nn.BatchNorm2d(16),
            nn.ReLU(inplace=False),
            nn.MaxPool2d(2),
        )
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(16 * side * side, 120),
            nn.ReLU(inplace=False),
            nn.Linear(120, 84),
            nn.ReLU(inplace=False),
            nn.Linear(84, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))
