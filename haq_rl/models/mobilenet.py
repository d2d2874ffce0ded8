"""MobileNetV1 (Howard et al. 2017) and MobileNetV2 (Sandler et al. 2018).

Two layouts per network, chosen by ``input_size``:

* ``input_size > 64``: the ImageNet 224 px layout of the papers (five stride-2 stages).
  MobileNetV2 then has exactly HAQ's 53 quantizable layers in module order: stem conv,
  17 inverted residual blocks (the first without expansion conv), last 1x1 conv, FC.
* ``input_size <= 64`` (MNIST, CIFAR): the same layers, but fewer downsamplings so a
  28 px image still ends at a few pixels instead of vanishing. The stem keeps stride 2:
  a stride-1 stem trains ~5x slower on CPU for no accuracy gain at 28 px.

Module names follow torchvision (``features.N...``, ``classifier.1``) so layer names in
policies look familiar. Activations are ``nn.ReLU6`` modules, never functional.
"""

from __future__ import annotations

import torch
from torch import nn

SMALL_INPUT_MAX = 64


def make_divisible(value: float, divisor: int = 8) -> int:
    """Round channels to a multiple of ``divisor`` without losing more than 10 %."""
    rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
    if rounded < 0.9 * value:
        rounded += divisor
    return rounded


class ConvBNReLU(nn.Sequential):
    """Conv2d (no bias) + BatchNorm + ReLU6; ``groups`` makes it depthwise."""

    def __init__(self, cin: int, cout: int, kernel: int = 3, stride: int = 1, groups: int = 1):
        super().__init__(
            nn.Conv2d(cin, cout, kernel, stride, kernel // 2, groups=groups, bias=False),
            nn.BatchNorm2d(cout),
            nn.ReLU6(inplace=False),
        )


class InvertedResidual(nn.Module):
    """Expand 1x1 (skipped when t == 1), depthwise 3x3, linear project 1x1, residual."""

    def __init__(self, cin: int, cout: int, stride: int, expand_ratio: int):
        super().__init__()
        hidden = int(round(cin * expand_ratio))
        self.use_residual = stride == 1 and cin == cout
        layers: list[nn.Module] = []
        if expand_ratio != 1:
            layers.append(ConvBNReLU(cin, hidden, kernel=1))
        layers += [
            ConvBNReLU(hidden, hidden, stride=stride, groups=hidden),
            nn.Conv2d(hidden, cout, 1, bias=False),
            nn.BatchNorm2d(cout),
        ]
        self.conv = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv(x)
        return x + out if self.use_residual else out


# t (expansion), c (channels), n (blocks), s (stride of the first block) -- the paper's table.
MOBILENETV2_SETTINGS = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2),
                        (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1))
# Small inputs: drop the stride of the 24- and 160-channel stages: 28 -> 14 -> 7 -> 4.
MOBILENETV2_SMALL_STRIDES = (1, 1, 2, 2, 1, 1, 1)


class MobileNetV2(nn.Module):
    """MobileNetV2 with width multiplier; layout chosen by ``input_size`` (see module doc)."""

    def __init__(self, num_classes: int = 1000, in_channels: int = 3, input_size: int = 224,
                 width_mult: float = 1.0, dropout: float = 0.2):
        super().__init__()
        small = input_size <= SMALL_INPUT_MAX
        cin = make_divisible(32 * width_mult)
        self.last_channel = make_divisible(1280 * max(1.0, width_mult))
        features: list[nn.Module] = [ConvBNReLU(in_channels, cin, stride=2)]
        for i, (t, c, n, s) in enumerate(MOBILENETV2_SETTINGS):
            stride = MOBILENETV2_SMALL_STRIDES[i] if small else s
            cout = make_divisible(c * width_mult)
            for j in range(n):
                features.append(InvertedResidual(cin, cout, stride if j == 0 else 1, t))
                cin = cout
        features.append(ConvBNReLU(cin, self.last_channel, kernel=1))
        self.features = nn.Sequential(*features)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(nn.Dropout(dropout), nn.Linear(self.last_channel, num_classes))
        _init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.pool(self.features(x)), 1))


# (channels, stride) of the depthwise-separable blocks after the 32-channel stem.
MOBILENETV1_SETTINGS = ((64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2),
                        (512, 1), (512, 1), (512, 1), (512, 1), (512, 1), (1024, 2), (1024, 1))
# Small inputs keep two of the five downsamplings after the stem: 28 -> 14 -> 7 -> 4.
MOBILENETV1_SMALL_STRIDES = (1, 2, 1, 1, 1, 2, 1, 1, 1, 1, 1, 1, 1)


class MobileNetV1(nn.Module):
    """Stem conv + 13 depthwise-separable blocks (dw 3x3 + pw 1x1) + FC: 28 layers."""

    def __init__(self, num_classes: int = 1000, in_channels: int = 3, input_size: int = 224,
                 width_mult: float = 1.0):
        super().__init__()
        small = input_size <= SMALL_INPUT_MAX
        cin = make_divisible(32 * width_mult)
        features: list[nn.Module] = [ConvBNReLU(in_channels, cin, stride=2)]
        for i, (c, s) in enumerate(MOBILENETV1_SETTINGS):
            stride = MOBILENETV1_SMALL_STRIDES[i] if small else s
            cout = make_divisible(c * width_mult)
            features.append(nn.Sequential(
                ConvBNReLU(cin, cin, stride=stride, groups=cin),
                ConvBNReLU(cin, cout, kernel=1),
            ))
            cin = cout
        self.features = nn.Sequential(*features)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(nn.Linear(cin, num_classes))
        _init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.pool(self.features(x)), 1))


def _init_weights(model: nn.Module) -> None:
    """torchvision's MobileNet initialisation (kaiming fan-out convs, small-normal FC)."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, 0, 0.01)
            nn.init.zeros_(m.bias)
