"""Fake quantizers built on PyTorch's native fake-quantize ops.

Weights are symmetric and signed: ``w`` bits give the integer grid
``[-(2^(w-1) - 1), 2^(w-1) - 1]`` (at most ``2^w - 1`` distinct values; zero exact, no
zero point, which is what bit-serial / BitFusion-style hardware computes with).
One bit means binary weights ``sign(w) * mean|w|`` (per channel or per tensor).

Activations are quantized per tensor. An activation whose calibration minimum is >= 0
(after ReLU/ReLU6) is unsigned: grid ``[0, 2^a - 1]``, ``2^a`` values. Otherwise it is
signed and symmetric: grid ``[-2^(a-1), 2^(a-1) - 1]`` with scale ``clip / (2^(a-1) - 1)``
(``2^a`` values). The native ops give straight-through-estimator gradients, so the same
functions serve evaluation and quantization-aware training.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from haq_rl.errors import PolicyError

_EPS = 1e-12  # smallest scale: an all-zero channel must not divide by zero


def weight_qrange(bits: int) -> tuple[int, int]:
    """Symmetric signed integer range of ``bits``-bit weights (``bits >= 2``)."""
    if bits < 2:
        raise PolicyError(f"linear weight quantization needs >= 2 bits, got {bits}")
    q = 2 ** (bits - 1) - 1
    return -q, q


def act_qrange(bits: int, signed: bool) -> tuple[int, int]:
    """Integer range of ``bits``-bit activations (``2^bits`` levels)."""
    if signed:
        if bits < 2:
            raise PolicyError("a signed activation needs >= 2 bits (1 bit only for "
                              "non-negative inputs, e.g. after ReLU)")
        return -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
    return 0, 2 ** bits - 1


def act_scale(clip: float, bits: int, signed: bool) -> float:
    """Step size that maps ``[0, clip]`` (unsigned) or ``[-clip, clip]`` (signed) onto the grid."""
    positive_levels = 2 ** (bits - 1) - 1 if signed else 2 ** bits - 1
    return max(float(clip), _EPS) / positive_levels


def weight_scales(weight: torch.Tensor, bits: int, per_channel: bool) -> torch.Tensor:
    """Max-abs symmetric scale(s): shape ``(out_channels,)`` per channel, ``()`` per tensor."""
    _, qmax = weight_qrange(bits)
    w = weight.detach()
    absmax = w.abs().flatten(1).amax(dim=1) if per_channel else w.abs().amax()
    return (absmax / qmax).clamp_min(_EPS).to(torch.float32)


def fake_quantize_weight(weight: torch.Tensor, bits: int, per_channel: bool = True,
                         scale: torch.Tensor | None = None) -> torch.Tensor:
    """Fake-quantize a weight tensor (STE gradient w.r.t. ``weight``).

    ``scale`` defaults to the max-abs scale of ``weight`` (computed without gradient).
    ``bits == 1`` gives binary weights ``sign(w) * mean|w|``.
    """
    if bits == 1:
        return binarize_weight(weight, per_channel)
    qmin, qmax = weight_qrange(bits)
    if scale is None:
        scale = weight_scales(weight, bits, per_channel)
    if per_channel and weight.dim() > 1:
        zero = torch.zeros(weight.shape[0], dtype=torch.int32, device=weight.device)
        return torch.fake_quantize_per_channel_affine(weight, scale.to(weight.device), zero,
                                                      0, qmin, qmax)
    return torch.fake_quantize_per_tensor_affine(weight, float(scale), 0, qmin, qmax)


def binarize_weight(weight: torch.Tensor, per_channel: bool = True) -> torch.Tensor:
    """Binary weights ``sign(w) * mean|w|`` with a straight-through gradient.

    Not a native fake-quant op: no native op has a 1-bit symmetric grid without zero.
    """
    w = weight
    alpha = (w.detach().abs().flatten(1).mean(dim=1).view(-1, *([1] * (w.dim() - 1)))
             if per_channel and w.dim() > 1 else w.detach().abs().mean())
    sign = torch.where(w.detach() >= 0, 1.0, -1.0).to(w.dtype)
    binary = sign * alpha
    # STE: forward the binary value, backward the identity.
    return w + (binary - w).detach() if w.requires_grad else binary


@dataclass(frozen=True)
class ActQuantParams:
    """Precomputed per-tensor activation fake-quant parameters for one (layer, a_bits)."""

    bits: int
    signed: bool
    clip: float
    scale: float
    qmin: int
    qmax: int

    @classmethod
    def from_clip(cls, clip: float, bits: int, signed: bool) -> ActQuantParams:
        """Parameters for clipping range ``clip`` (``[-clip, clip]`` signed, ``[0, clip]`` not)."""
        qmin, qmax = act_qrange(bits, signed)
        # Rounded to float32 once: the native kernels compute in float32, and the fast
        # evaluation path must reproduce them bit for bit.
        scale = float(np.float32(act_scale(clip, bits, signed)))
        return cls(bits=bits, signed=signed, clip=float(clip), scale=scale, qmin=qmin, qmax=qmax)

    @property
    def inv_scale(self) -> float:
        """``1/scale`` as the native kernel computes it (float32 division)."""
        return float(np.float32(1.0) / np.float32(self.scale))

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return torch.fake_quantize_per_tensor_affine(x, self.scale, 0, self.qmin, self.qmax)


def fake_quantize_act(x: torch.Tensor, clip: float, bits: int, signed: bool) -> torch.Tensor:
    """One-off activation fake quantization (use :class:`ActQuantParams` in loops)."""
    return ActQuantParams.from_clip(clip, bits, signed)(x)
