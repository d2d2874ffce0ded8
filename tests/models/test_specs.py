"""LayerSpecs from one traced forward: shapes, kinds, MACs, training flag restored."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from haq_rl.errors import ConfigError
from haq_rl.models import build_model, extract_layer_specs, model_summary, quantizable_layers


@pytest.fixture(scope="module")
def mobilenetv2_224_specs():
    model = build_model("mobilenetv2", num_classes=1000, in_channels=3, input_size=224)
    return model, extract_layer_specs(model, (3, 224, 224))


def test_mobilenetv2_224_matches_haq_layers(mobilenetv2_224_specs) -> None:
    model, specs = mobilenetv2_224_specs
    assert len(specs) == 53
    assert [s.name for s in specs] == [n for n, _ in quantizable_layers(model)]
    kinds = [s.kind for s in specs]
    assert kinds.count("depthwise") == 17
    assert kinds.count("linear") == 1 and kinds[-1] == "linear"
    assert kinds.count("conv") == 35
    first, block1_dw, block1_proj = specs[0], specs[1], specs[2]
    assert (first.kind, first.kernel, first.stride, first.out_channels) == ("conv", 3, 2, 32)
    assert (first.in_h, first.out_h) == (224, 112)
    # First block has t=1: depthwise then projection, no expansion conv.
    assert block1_dw.kind == "depthwise" and block1_dw.groups == 32
    assert (block1_proj.in_channels, block1_proj.out_channels, block1_proj.kernel) == (32, 16, 1)
    last_conv, fc = specs[-2], specs[-1]
    assert (last_conv.in_channels, last_conv.out_channels, last_conv.out_h) == (320, 1280, 7)
    assert (fc.in_channels, fc.out_channels, fc.in_h, fc.out_w) == (1280, 1000, 1, 1)
    macs = sum(s.macs for s in specs)
    assert 290e6 < macs < 310e6  # the paper's 300 M MACs


def test_small_mobilenetv2_keeps_53_layers_and_a_spatial_map() -> None:
    model = build_model("mobilenetv2")
    specs = extract_layer_specs(model, (1, 28, 28))
    assert len(specs) == 53
    assert specs[-2].out_h >= 2 and specs[-2].out_w >= 2
    assert specs[0].stride == 2


def test_specs_restore_training_mode_and_record_batch() -> None:
    model = build_model("resnet8", in_channels=3, input_size=32).train()
    specs = extract_layer_specs(model, (3, 32, 32), batch=8)
    assert model.training
    assert all(s.batch == 8 for s in specs)
    assert sum(s.macs for s in specs) == 8 * sum(s.with_batch(1).macs for s in specs)
    model.eval()
    extract_layer_specs(model, (3, 32, 32))
    assert not model.training


def test_grouped_and_depthwise_kinds() -> None:
    model = nn.Sequential(
        nn.Conv2d(4, 8, 3, padding=1),
        nn.Conv2d(8, 8, 3, stride=2, padding=1, groups=8),
        nn.Conv2d(8, 16, 3, groups=2, bias=False),
        nn.Flatten(),
        nn.Linear(16 * 2 * 2, 3),
    )
    specs = extract_layer_specs(model, (4, 8, 8))
    assert [s.kind for s in specs] == ["conv", "depthwise", "grouped", "linear"]
    assert (specs[1].in_h, specs[1].out_h, specs[1].stride) == (8, 4, 2)
    assert (specs[2].out_h, specs[2].has_bias, specs[2].groups) == (2, False, 2)
    assert specs[3].in_channels == 64


def test_unused_layer_is_an_error() -> None:
    class WithUnused(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.used = nn.Linear(4, 2)
            self.unused = nn.Linear(4, 2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.used(x.flatten(1))

    with pytest.raises(ConfigError, match="unused"):
        extract_layer_specs(WithUnused(), (1, 2, 2))


def test_bad_input_shape() -> None:
    with pytest.raises(ConfigError, match="C, H, W"):
        extract_layer_specs(build_model("lenet5"), (28, 28))


def test_model_summary_counts() -> None:
    summary = model_summary(build_model("lenet5"), (1, 28, 28))
    assert summary.layers == 5
    assert summary.kinds == {"conv": 2, "linear": 3}
    assert summary.params == sum(p.numel() for p in build_model("lenet5").parameters())
    assert 0.4e6 < summary.macs < 0.45e6
    assert "5 layers" in str(summary)
