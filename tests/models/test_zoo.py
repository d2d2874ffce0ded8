"""Every zoo model builds, runs forward and has stable layer names; bad names fail clearly."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from haq_rl.errors import ConfigError, UnknownNameError
from haq_rl.models import MODEL_NAMES, build_model, quantizable_layers

SMALL_MODELS = ("lenet5", "resnet8", "resnet20", "mobilenetv1", "mobilenetv2")


def test_model_names_cover_the_zoo() -> None:
    assert set(MODEL_NAMES) == {"lenet5", "resnet8", "resnet20", "resnet18", "resnet50",
                                "mobilenetv1", "mobilenetv2"}


@pytest.mark.parametrize("name", SMALL_MODELS)
@pytest.mark.parametrize("channels,size", [(1, 28), (3, 32)])
def test_small_models_forward(name: str, channels: int, size: int) -> None:
    torch.manual_seed(0)
    model = build_model(name, num_classes=7, in_channels=channels, input_size=size).eval()
    with torch.no_grad():
        out = model(torch.randn(2, channels, size, size))
    assert out.shape == (2, 7)
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("name", ["resnet18", "resnet50"])
def test_imagenet_resnets_forward_at_small_size(name: str) -> None:
    model = build_model(name, num_classes=5, in_channels=3, input_size=64).eval()
    with torch.no_grad():
        assert model(torch.randn(1, 3, 64, 64)).shape == (1, 5)


def test_mobilenetv2_forward_at_224() -> None:
    model = build_model("mobilenetv2", num_classes=1000, in_channels=3, input_size=224).eval()
    with torch.no_grad():
        assert model(torch.randn(1, 3, 224, 224)).shape == (1, 1000)


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_layer_names_are_stable_across_builds(name: str) -> None:
    first = [n for n, _ in quantizable_layers(build_model(name, in_channels=3, input_size=32))]
    second = [n for n, _ in quantizable_layers(build_model(name, in_channels=3, input_size=32))]
    assert first == second
    assert len(first) == len(set(first)) > 0


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_activations_are_modules_not_inplace(name: str) -> None:
    model = build_model(name, in_channels=3, input_size=32)
    relus = [m for m in model.modules() if isinstance(m, nn.ReLU | nn.ReLU6)]
    assert relus, "activations must be nn.ReLU / nn.ReLU6 modules"
    assert not any(m.inplace for m in relus)


def test_width_mult_changes_mobilenet_channels() -> None:
    thin = build_model("mobilenetv2", width_mult=0.5)
    wide = build_model("mobilenetv2")
    assert sum(p.numel() for p in thin.parameters()) < sum(p.numel() for p in wide.parameters())
    assert len(quantizable_layers(thin)) == len(quantizable_layers(wide)) == 53


def test_quantizable_layers_are_conv_and_linear_in_module_order() -> None:
    layers = quantizable_layers(build_model("lenet5"))
    assert [type(m) for _, m in layers] == [nn.Conv2d, nn.Conv2d, nn.Linear, nn.Linear, nn.Linear]
    assert [n for n, _ in layers] == ["features.0", "features.4", "classifier.1",
                                      "classifier.3", "classifier.5"]


def test_unknown_model_suggests_a_name() -> None:
    with pytest.raises(UnknownNameError, match="did you mean 'lenet5'"):
        build_model("lenet")
    with pytest.raises(LookupError):  # also the built-in base class
        build_model("mobilenetv9")


@pytest.mark.parametrize("kwargs", [{"num_classes": 0}, {"in_channels": -1}, {"input_size": 0},
                                    {"width_mult": 0.0}])
def test_invalid_build_arguments(kwargs: dict) -> None:
    with pytest.raises(ConfigError):
        build_model("mobilenetv2", **kwargs)


def test_width_mult_rejected_for_models_without_it() -> None:
    with pytest.raises(ConfigError, match="width"):
        build_model("resnet8", width_mult=0.5)


@pytest.mark.parametrize("size", [8, 20, 28, 32, 40])
def test_lenet_accepts_any_input_size(size: int) -> None:
    # Inputs below 32 px are padded in the first conv (digits is 8 px, MNIST 28 px).
    model = build_model("lenet5", input_size=size).eval()
    with torch.no_grad():
        assert model(torch.zeros(1, 1, size, size)).shape == (1, 10)
