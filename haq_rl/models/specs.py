"""Quantizable layers of a model and their shapes (LayerSpec) from one traced forward."""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import torch
from torch import nn

from haq_rl.errors import ConfigError, check_integer
from haq_rl.hardware.layer_spec import LayerSpec, describe
from haq_rl.quant.layers import QUANTIZABLE_TYPES

logger = logging.getLogger(__name__)

def quantizable_layers(model: nn.Module) -> list[tuple[str, nn.Conv2d | nn.Linear]]:
    """``(fully qualified name, module)`` of every Conv2d and Linear, in module order."""
    return [(name, m) for name, m in model.named_modules() if isinstance(m, QUANTIZABLE_TYPES)]


def _square(value: int | tuple[int, ...], what: str, name: str) -> int:
    """LayerSpec has one kernel/stride; a non-square one is approximated by its maximum."""
    if isinstance(value, int):
        return value
    if len(set(value)) > 1:
        logger.warning("layer %s: non-square %s %s approximated by %d", name, what, value, max(value))
    return int(max(value))


def _kind(module: nn.Conv2d | nn.Linear) -> str:
    if isinstance(module, nn.Linear):
        return "linear"
    groups = module.groups
    if groups > 1 and groups == module.in_channels:
        return "depthwise"
    return "grouped" if groups > 1 else "conv"


def _model_device(model: nn.Module) -> torch.device:
    for tensor in list(model.parameters()) + list(model.buffers()):
        return tensor.device
    return torch.device("cpu")


def extract_layer_specs(model: nn.Module, input_shape: tuple[int, int, int],
                        batch: int = 1) -> list[LayerSpec]:
    """One LayerSpec per quantizable layer (same order as :func:`quantizable_layers`).

    Runs a single forward pass of one zero image in eval mode under ``no_grad`` with
    forward hooks recording each layer's input and output shapes; the model's training
    flag is restored afterwards. ``batch`` is written into the specs (the accelerator's
    batch), it does not change the traced pass. A Linear applied to tokens (an input of
    shape (1, ..., features)) is costed over every token, and a layer called several times
    (weight sharing) once per call: both multiply ``batch``. Raises ConfigError when a quantizable
    layer is never called by ``forward`` (its cost would be unknown).
    """
    if len(input_shape) != 3:
        raise ConfigError(f"input_shape must be (C, H, W), got {tuple(input_shape)}")
    check_integer("batch", batch, 1)
    layers = quantizable_layers(model)
    shapes: dict[str, tuple[torch.Size, torch.Size]] = {}
    calls: dict[str, int] = {}
    rows: dict[str, int] = {}

    def make_hook(name: str):
        def hook(module: nn.Module, inputs: tuple, output: torch.Tensor) -> None:
            # Shapes of the first call; every call is costed (a shared layer runs each time),
            # and a Linear runs once per token of a (1, ..., features) input.
            shapes.setdefault(name, (inputs[0].shape, output.shape))
            calls[name] = calls.get(name, 0) + 1
            rows[name] = rows.get(name, 0) + math.prod(inputs[0].shape[:-1])
        return hook

    handles = [m.register_forward_hook(make_hook(name)) for name, m in layers]
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            model(torch.zeros(1, *input_shape, device=_model_device(model)))
    finally:
        for handle in handles:
            handle.remove()
        model.train(was_training)

    missing = [name for name, _ in layers if name not in shapes]
    if missing:
        raise ConfigError(f"layers never called by forward() cannot be costed: {', '.join(missing)}")
    specs = []
    for name, m in layers:
        in_shape, out_shape = shapes[name]
        if isinstance(m, nn.Linear):
            specs.append(LayerSpec(
                name=name, kind="linear", in_channels=m.in_features, out_channels=m.out_features,
                kernel=1, stride=1, groups=1, in_h=1, in_w=1, out_h=1, out_w=1, batch=batch * rows[name],
                has_bias=m.bias is not None))
        else:
            specs.append(LayerSpec(
                name=name, kind=_kind(m), in_channels=m.in_channels, out_channels=m.out_channels,
                kernel=_square(m.kernel_size, "kernel", name), stride=_square(m.stride, "stride", name),
                groups=m.groups, in_h=int(in_shape[-2]), in_w=int(in_shape[-1]),
                out_h=int(out_shape[-2]), out_w=int(out_shape[-1]), batch=batch * calls[name],
                has_bias=m.bias is not None))
    return specs


@dataclass(frozen=True)
class ModelSummary:
    """Size facts of a model at one input shape (MACs per image of its quantizable layers)."""

    layers: int
    params: int
    macs: int
    kinds: dict[str, int]
    text: str

    def __str__(self) -> str:
        return f"{self.text}, {self.params / 1e6:.3f} M parameters"


def model_summary(model: nn.Module, input_shape: tuple[int, int, int]) -> ModelSummary:
    """Count quantizable layers, parameters and MACs per image of ``model``."""
    specs = extract_layer_specs(model, input_shape)
    kinds: dict[str, int] = {}
    for spec in specs:
        kinds[spec.kind] = kinds.get(spec.kind, 0) + 1
    return ModelSummary(
        layers=len(specs),
        params=sum(p.numel() for p in model.parameters()),
        macs=sum(spec.macs for spec in specs),
        kinds=kinds,
        text=describe(specs),
    )
