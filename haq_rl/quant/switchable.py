"""Per-width quantizers: one LSQ quantizer per bit width a layer may take, one active.

The bit-width supernet (:mod:`haq_rl.supernet.model`) switches them per policy; the
differentiable search (:mod:`haq_rl.search.sdq_relax`) mixes adjacent widths. Both train
the quantizers QAT trains and the export reads (:mod:`haq_rl.quant.lsq`), so there is one
fake-quant path.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
import torch
from torch import nn
from torch.nn.utils import parametrize

from haq_rl.errors import PolicyError
from haq_rl.quant.calibration import InputStats, clip_range
from haq_rl.quant.config import QuantConfig
from haq_rl.quant.lsq import LSQActQuantizer, LSQWeightQuantizer
from haq_rl.quant.qat import act_pre_hook

#: Bits of the pinned layers and of a weight-only task's activations (the 8/8 reference).
REFERENCE_BITS = 8


class _WidthSwitch(nn.Module):
    """One quantizer per width (``quantizers["4"]``...); ``active`` picks the one the forward
    uses, None passes its input through (the float model, for reference passes)."""

    def __init__(self, quantizers: dict[str, nn.Module]) -> None:
        super().__init__()
        self.quantizers = nn.ModuleDict(quantizers)
        self.active: int | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.active is None:
            return x
        return self.quantizers[str(self.active)](x)


class SwitchableWeight(_WidthSwitch):
    """Parametrization: latent weight -> its fake-quantized value at the active width."""

    def __init__(self, weight: torch.Tensor, bits: Sequence[int], per_channel: bool) -> None:
        super().__init__({str(b): LSQWeightQuantizer.from_weight(weight, b, per_channel) for b in bits})


class SwitchableActivation(_WidthSwitch):
    """The input quantizer of one layer: one learned step (and zero point) per width."""

    def __init__(self, stats: InputStats, bits: Sequence[int], config: QuantConfig, zero_point: bool) -> None:
        super().__init__({
            str(b): LSQActQuantizer.from_clip(clip_range(stats, b, config.act_calibration, config.percentile),
                                              b, stats.signed, learn_zero_point=zero_point)
            for b in bits})


def bit_choices(layer_count: int, pinned: np.ndarray, min_bits: int, max_bits: int,
                weight_only: bool) -> tuple[list[tuple[int, ...]], list[tuple[int, ...]]]:
    """Per layer, the weight and activation widths a task's policies can take.

    Pinned layers hold only 8/8; a weight-only task's activations hold only 8 (what the
    budget rules of :mod:`haq_rl.task.budget` let a policy reach, and nothing else).
    """
    free = tuple(range(min_bits, max_bits + 1))
    fixed = (REFERENCE_BITS,)
    w_choices = [fixed if pinned[i] else free for i in range(layer_count)]
    a_choices = [fixed if pinned[i] or weight_only else free for i in range(layer_count)]
    return w_choices, a_choices


def install_width_quantizers(layers: Iterable[tuple[str, nn.Module]], w_choices: Sequence[Sequence[int]],
                             a_choices: Sequence[Sequence[int]], stats: dict[str, InputStats], config: QuantConfig,
                             zero_point: bool, weight_class: type[SwitchableWeight] = SwitchableWeight,
                             act_class: type[SwitchableActivation] = SwitchableActivation,
                             ) -> list[tuple[str, SwitchableWeight, SwitchableActivation]]:
    """Give each layer one quantizer per width it may take (its weight parametrized, its
    input quantized by a pre-hook), in place; ``(name, weight, activation)`` per layer.
    A layer whose activation cannot be calibrated is a PolicyError naming it."""
    per_channel = config.weight_granularity == "per_channel"
    installed = []
    for (name, module), w_bits, a_bits in zip(layers, w_choices, a_choices, strict=True):
        try:
            act = act_class(stats[name], a_bits, config, zero_point)
        except PolicyError as error:
            raise PolicyError(f"layer {name!r}: {error}") from None
        weight = weight_class(module.get_parameter("weight").detach(), w_bits, per_channel)
        parametrize.register_parametrization(module, "weight", weight)
        module.add_module("act_quant", act)
        module.register_forward_pre_hook(act_pre_hook)
        installed.append((name, weight, act))
    return installed
