"""Learned step size quantization (LSQ, Esser et al., ICLR 2020) and its LSQ+ zero point.

The fake quantizers QAT trains with. Both keep the integer grids of
:mod:`haq_rl.quant.quantizers` (what the search scores and what the ONNX export writes):

* weights: symmetric signed ``[-(2^(b-1) - 1), 2^(b-1) - 1]``, one learned step per output
  channel (or one per tensor); 1 bit is ``{-s, +s}`` (``sign(w) * s``, ``s`` learned);
* activations: one learned step per tensor on ``[0, 2^a - 1]`` (non-negative inputs, e.g.
  after ReLU) or ``[-2^(a-1), 2^(a-1) - 1]`` (signed inputs), plus, for signed inputs, an
  optional learned zero point (LSQ+, Bhalgat et al., CVPR-W 2020: a learned offset lets an
  asymmetric distribution use the whole grid).

Forward: ``q = clamp(round(x / s) + z, qmin, qmax)``, ``x_hat = (q - z) * s``. Backward is
LSQ's: the straight-through estimator for ``round`` gives ``d x_hat / d s = q - z - x / s``
inside the range and ``qmin - z`` / ``qmax - z`` outside it, and the step's gradient is
multiplied by ``g = 1 / sqrt(N * Qp)`` (N elements per channel / per sample, Qp the largest
positive level; paper, section 2.2) so steps and weights learn at comparable rates.

The zero point is learned as a real number in grid units and rounded (straight-through) in
the forward, so what was trained is exactly what integer hardware and ONNX QDQ compute
(``QuantizeLinear`` with an integer zero point). LSQ+'s offset is ``beta = -z * s``.

The pieces are reusable: :func:`lsq_fake_quantize` is the one forward every quantizer here
calls (a supernet can hold one step per layer and bit width and call it directly);
:func:`step_parameters` and :func:`split_decay_parameters` keep steps and zero points out
of weight decay (decay would pull the steps to zero, i.e. towards clipping everything).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from typing import Any

import torch
from torch import nn

from haq_rl.errors import PolicyError

from .quantizers import act_qrange, act_scale, weight_qrange, weight_scales

_EPS = 1e-8  # smallest step used in the forward: a step trained through zero stays usable

#: Ways to initialise weight steps: ``max_abs`` reproduces the search's weights exactly
#: (max |w| per channel / Qp); ``lsq`` is the paper's ``2 mean|w| / sqrt(Qp)``.
WEIGHT_STEP_INITS = ("max_abs", "lsq")


def round_ste(x: torch.Tensor) -> torch.Tensor:
    """``round(x)`` (half to even, as ONNX and the native kernels) with identity gradient."""
    return x + (torch.round(x) - x).detach()


def grad_scale(x: torch.Tensor, scale: float) -> torch.Tensor:
    """``x`` in the forward; its gradient multiplied by ``scale`` in the backward."""
    if scale == 1.0:
        return x
    scaled = x * scale
    return (x - scaled).detach() + scaled


def lsq_grad_scale(elements: int, qmax: int) -> float:
    """LSQ's step-gradient scale ``1 / sqrt(N * Qp)`` (N elements sharing the step)."""
    return 1.0 / math.sqrt(max(int(elements), 1) * max(int(qmax), 1))


def lsq_fake_quantize(x: torch.Tensor, step: torch.Tensor, qmin: int, qmax: int,
                      gradient_scale: float = 1.0, zero_point: torch.Tensor | None = None,
                      channel_axis: int | None = None) -> torch.Tensor:
    """LSQ fake quantization of ``x`` with learnable ``step`` (and optional ``zero_point``).

    ``step`` is a scalar/one-element tensor (per tensor), or has ``x.shape[channel_axis]``
    elements (per channel). ``zero_point`` is in grid units (rounded straight-through,
    clamped into ``[qmin, qmax]`` so zero stays representable). Gradients reach ``x``
    (straight-through inside the range, zero outside), ``step`` (LSQ, times
    ``gradient_scale``) and ``zero_point``.

    One fused autograd node (:class:`_LSQFakeQuantize`) computes what the composition of
    :func:`round_ste`, :func:`grad_scale` and ``clamp`` would, value for value and gradient
    for gradient (tests/quant/test_lsq.py checks both against that composition), in a
    third of the elementwise kernels: QAT and supernet training spend most of their time
    in these, not in the convolutions.
    """
    s = step.abs().clamp_min(_EPS)
    if channel_axis is not None and s.numel() > 1:
        shape = [1] * x.dim()
        shape[channel_axis] = -1
        s = s.reshape(shape)
    else:
        s = s.reshape(())
    wants_grad = torch.is_grad_enabled() and (
        x.requires_grad or step.requires_grad or (zero_point is not None and zero_point.requires_grad))
    if not wants_grad:
        return _native_fake_quantize(x, s, zero_point, qmin, qmax, channel_axis)
    if zero_point is None:
        z = None
    else:
        # The integer zero point: rounded straight-through, its gradient scaled like the step's.
        z = round_ste(grad_scale(zero_point, gradient_scale).clamp(qmin, qmax)).reshape(())
    return _LSQFakeQuantize.apply(x, step, s, z, qmin, qmax, gradient_scale, channel_axis)


def _native_fake_quantize(x: torch.Tensor, s: torch.Tensor, zero_point: torch.Tensor | None, qmin: int, qmax: int,
                          channel_axis: int | None) -> torch.Tensor:
    """The same grid without autograd (no gradient needed): what evaluations, the supernet
    reward and the exported model's check run. Per tensor, four in-place passes; per
    channel, torch's fused kernel."""
    z = 0 if zero_point is None else int(torch.round(zero_point.detach().clamp(qmin, qmax)))
    if s.dim() == 0:
        # torch.fake_quantize_per_tensor_affine's formula, (clamp(round(x * (1/s)) + z) - z) * s
        # with the float32 reciprocal, as four in-place passes: the same values bit for bit
        # (tests/quant/test_lsq.py), and 6-9x faster on CPU than that kernel (64 ms vs 7 ms
        # for 4.7M elements, one thread, torch 2.13), where evaluations spent half their time.
        scale = s.detach().to(torch.float32)
        inverse = torch.reciprocal(scale)
        return (x * inverse).round_().add_(z).clamp_(qmin, qmax).sub_(z).mul_(scale)
    scales = s.detach().reshape(-1).to(torch.float32)
    zeros = torch.full_like(scales, z, dtype=torch.int32)
    return torch.fake_quantize_per_channel_affine(x, scales, zeros, int(channel_axis or 0), qmin, qmax)


class _LSQFakeQuantize(torch.autograd.Function):
    """``round(clamp(x / s, qmin - z, qmax - z)) * s`` with LSQ's gradients.

    Backward (straight-through rounding): ``d/dx = 1`` inside the range, 0 outside;
    ``d/ds = q - x/s`` inside and the bound ``qmin - z`` / ``qmax - z`` outside (``q`` is
    the rounded clamped value, so one formula, ``q - inside * x/s``, covers both), times
    ``gradient_scale`` and the sign of the raw step (``s = |step|``, 0 where it sits at the
    floor); ``d/dz = -s`` outside the range, 0 inside.
    """

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, step: torch.Tensor, s: torch.Tensor, z: torch.Tensor | None,
                qmin: int, qmax: int, gradient_scale: float, channel_axis: int | None) -> torch.Tensor:
        v = x / s
        q = torch.round(_clamp_to_grid(v, qmin, qmax, z))
        ctx.save_for_backward(x, step, s, z if z is not None else torch.empty(0))
        ctx.has_zero = z is not None
        ctx.bounds = (qmin, qmax)
        ctx.gradient_scale = gradient_scale
        ctx.channel_axis = channel_axis
        return q * s

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        x, step, s, z = ctx.saved_tensors
        qmin, qmax = ctx.bounds
        zero = z if ctx.has_zero else None
        v = x / s
        q = torch.round(_clamp_to_grid(v, qmin, qmax, zero))
        inside = (v >= qmin) & (v <= qmax) if zero is None else (v >= qmin - zero) & (v <= qmax - zero)
        grad_x = grad * inside if ctx.needs_input_grad[0] else None
        grad_step = None
        if ctx.needs_input_grad[1]:
            per_element = grad * (q - torch.where(inside, v, 0.0))
            if s.dim() == 0:
                total = per_element.sum().reshape(step.shape)
            else:
                dims = [d for d in range(x.dim()) if d != ctx.channel_axis]
                total = per_element.sum(dim=dims).reshape(step.shape)
            # s = |step| clamped at _EPS: the sign of step, nothing below the floor.
            active = step.abs() >= _EPS
            grad_step = total * ctx.gradient_scale * torch.where(active, torch.sign(step), 0.0)
        grad_z = None
        if ctx.has_zero and ctx.needs_input_grad[3]:
            grad_z = -(grad * torch.where(inside, 0.0, s)).sum().reshape(z.shape)
        return grad_x, grad_step, None, grad_z, None, None, None, None


def _clamp_to_grid(v: torch.Tensor, qmin: int, qmax: int, zero: torch.Tensor | None) -> torch.Tensor:
    """``v`` (in grid units) clamped to the integer range, shifted by the zero point if any."""
    if zero is None:
        return torch.clamp(v, qmin, qmax)
    return torch.clamp(v, qmin - zero, qmax - zero)


def _sign_ste(w: torch.Tensor) -> torch.Tensor:
    """``sign(w)`` with ``sign(0) = +1`` and identity gradient (BinaryConnect's STE)."""
    return w + (torch.where(w >= 0, 1.0, -1.0).to(w.dtype) - w).detach()


class LSQWeightQuantizer(nn.Module):
    """Parametrization: latent float weight -> fake-quantized weight with learned step(s).

    Use with ``torch.nn.utils.parametrize.register_parametrization(module, "weight", q)``, or
    call it on a weight tensor. ``step`` has one entry per output channel (dim 0) when
    ``per_channel``, else one.
    """

    def __init__(self, bits: int, step: torch.Tensor, per_channel: bool = True) -> None:
        super().__init__()
        if bits == 1:
            self.qmin, self.qmax = -1, 1
        else:
            self.qmin, self.qmax = weight_qrange(bits)  # PolicyError below 1 bit
        self.bits = int(bits)
        self.per_channel = bool(per_channel)
        step = torch.as_tensor(step, dtype=torch.float32).detach().reshape(-1).clone()
        if not per_channel and step.numel() != 1:
            raise PolicyError(f"a per-tensor weight step has 1 element, got {step.numel()}")
        if not bool(torch.isfinite(step).all()) or bool((step <= 0).any()):
            raise PolicyError("weight steps must be finite and > 0")
        self.step = nn.Parameter(step)

    @classmethod
    def from_weight(cls, weight: torch.Tensor, bits: int, per_channel: bool = True,
                    init: str = "max_abs") -> LSQWeightQuantizer:
        """Steps initialised from ``weight``: ``init`` is one of :data:`WEIGHT_STEP_INITS`."""
        return cls(bits, initial_weight_step(weight, bits, per_channel, init), per_channel)

    def gradient_scale(self, weight: torch.Tensor) -> float:
        elements = weight[0].numel() if self.per_channel and weight.dim() > 1 else weight.numel()
        return lsq_grad_scale(elements, self.qmax)

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        per_channel = self.per_channel and weight.dim() > 1
        g = self.gradient_scale(weight)
        if self.bits == 1:
            s = grad_scale(self.step, g).abs().clamp_min(_EPS)
            s = s.reshape(-1, *([1] * (weight.dim() - 1))) if per_channel else s.reshape(())
            return _sign_ste(weight) * s
        return lsq_fake_quantize(weight, self.step, self.qmin, self.qmax, g,
                                 channel_axis=0 if per_channel else None)

    @torch.no_grad()
    def integer_levels(self, weight: torch.Tensor) -> torch.Tensor:
        """The integer levels of ``weight`` (int8; ``{-1, +1}`` at 1 bit)."""
        s = self.step.abs().clamp_min(_EPS)
        if self.per_channel and weight.dim() > 1:
            s = s.reshape(-1, *([1] * (weight.dim() - 1)))
        if self.bits == 1:
            return torch.where(weight >= 0, 1, -1).to(torch.int8)
        return torch.clamp(torch.round(weight / s), self.qmin, self.qmax).to(torch.int8)

    def steps(self) -> torch.Tensor:
        """The positive steps actually used (detached, float32, 1-d)."""
        return self.step.detach().abs().clamp_min(_EPS).reshape(-1)

    def extra_repr(self) -> str:
        return f"bits={self.bits}, per_channel={self.per_channel}, channels={self.step.numel()}"


def initial_weight_step(weight: torch.Tensor, bits: int, per_channel: bool = True,
                        init: str = "max_abs") -> torch.Tensor:
    """Initial weight step(s), shape ``(out_channels,)`` per channel, ``(1,)`` per tensor."""
    if init not in WEIGHT_STEP_INITS:
        raise PolicyError(f"weight step init {init!r} must be one of {', '.join(WEIGHT_STEP_INITS)}")
    w = weight.detach().float()
    per_channel = per_channel and w.dim() > 1
    if bits == 1:  # binary: the mean |w| of binarize_weight (what the search scored)
        step = w.abs().flatten(1).mean(dim=1) if per_channel else w.abs().mean().reshape(1)
    elif init == "max_abs":
        step = weight_scales(w, bits, per_channel).reshape(-1)
    else:
        _, qmax = weight_qrange(bits)
        mean = w.abs().flatten(1).mean(dim=1) if per_channel else w.abs().mean().reshape(1)
        step = 2.0 * mean / math.sqrt(qmax)
    return step.clamp_min(1e-12).to(torch.float32)


class LSQActQuantizer(nn.Module):
    """Per-tensor activation fake quantizer with a learned step and optional LSQ+ zero point.

    ``signed`` picks the grid (see module docstring). ``learn_zero_point`` (signed inputs
    only: a non-negative input already starts its grid at zero) makes the zero point a
    parameter; otherwise it is a fixed buffer (initially 0, symmetric). ``learn_step=False``
    freezes the step (a fixed calibrated clip, as the search evaluates).
    """

    def __init__(self, bits: int, signed: bool, step: float, zero_point: float = 0.0,
                 learn_zero_point: bool = False, learn_step: bool = True) -> None:
        super().__init__()
        self.qmin, self.qmax = act_qrange(bits, signed)  # PolicyError: signed 1-bit
        self.bits = int(bits)
        self.signed = bool(signed)
        if not math.isfinite(step) or step <= 0:
            raise PolicyError(f"activation step {step!r} must be finite and > 0")
        if zero_point and not signed:
            raise PolicyError("a non-negative (unsigned) activation has no zero point")
        value = torch.tensor(float(step), dtype=torch.float32)
        zero = torch.tensor(float(zero_point), dtype=torch.float32)
        self.step = nn.Parameter(value, requires_grad=learn_step)
        self.learn_zero_point = bool(learn_zero_point and signed)
        if self.learn_zero_point:
            self.zero_point = nn.Parameter(zero)
        else:
            self.register_buffer("zero_point", zero)

    @classmethod
    def from_clip(cls, clip: float, bits: int, signed: bool, learn_zero_point: bool = False,
                  learn_step: bool = True) -> LSQActQuantizer:
        """Start from a calibrated clip: ``[0, clip]`` or ``[-clip, clip]`` (the search's scale)."""
        return cls(bits, signed, act_scale(clip, bits, signed), 0.0, learn_zero_point, learn_step)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        g = lsq_grad_scale(x[0].numel() if x.dim() > 1 else x.numel(), self.qmax)
        zero = self.zero_point if self.learn_zero_point or float(self.zero_point) != 0.0 else None
        return lsq_fake_quantize(x, self.step, self.qmin, self.qmax, g, zero)

    @property
    def scale(self) -> float:
        """The step in use (positive float)."""
        return float(self.step.detach().abs().clamp_min(_EPS))

    @property
    def integer_zero_point(self) -> int:
        """The zero point the forward uses (rounded, clamped into the grid)."""
        return int(torch.round(self.zero_point.detach().clamp(self.qmin, self.qmax)))

    @property
    def range(self) -> tuple[float, float]:
        """Smallest and largest representable value."""
        z = self.integer_zero_point
        return (self.qmin - z) * self.scale, (self.qmax - z) * self.scale

    def extra_repr(self) -> str:
        return (f"bits={self.bits}, signed={self.signed}, "
                f"learn_zero_point={self.learn_zero_point}")


def step_parameters(model: nn.Module) -> list[nn.Parameter]:
    """Every LSQ step and learned zero point in ``model`` (trainable ones; each once)."""
    seen: set[int] = set()
    out: list[nn.Parameter] = []
    for module in model.modules():
        if isinstance(module, LSQWeightQuantizer | LSQActQuantizer):
            for name in ("step", "zero_point"):
                param = module._parameters.get(name)
                if param is not None and param.requires_grad and id(param) not in seen:
                    seen.add(id(param))
                    out.append(param)
    return out


def split_decay_parameters(model: nn.Module, extra_no_decay: Iterable[nn.Parameter] = ()
                           ) -> tuple[list[nn.Parameter], list[nn.Parameter], list[nn.Parameter]]:
    """``(decay, no_decay, steps)``: weights (>= 2-d) / biases, norms and 1-d / LSQ steps.

    Steps and zero points are never decayed; ``extra_no_decay`` (e.g. PACT clips) joins
    ``no_decay``. Frozen parameters are left out.
    """
    steps = step_parameters(model)
    excluded = {id(p) for p in steps}
    extra = {id(p) for p in extra_no_decay}
    decay: list[nn.Parameter] = []
    no_decay: list[nn.Parameter] = []
    for param in _unique(model.parameters()):
        if not param.requires_grad or id(param) in excluded:
            continue
        (no_decay if param.dim() <= 1 or id(param) in extra else decay).append(param)
    return decay, no_decay, steps


def _unique(params: Iterable[nn.Parameter]) -> Iterator[nn.Parameter]:
    seen: set[int] = set()
    for param in params:
        if id(param) not in seen:
            seen.add(id(param))
            yield param
