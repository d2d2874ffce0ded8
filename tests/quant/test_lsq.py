"""LSQ / LSQ+ fake quantizers: grids, gradients, initialisation, parameter groups."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn
from torch.nn.utils import parametrize

from haq_rl.errors import PolicyError
from haq_rl.quant.lsq import (
    LSQActQuantizer,
    LSQWeightQuantizer,
    initial_weight_step,
    lsq_fake_quantize,
    lsq_grad_scale,
    split_decay_parameters,
    step_parameters,
)
from haq_rl.quant.quantizers import ActQuantParams, binarize_weight, fake_quantize_weight

from .helpers import tiny_cnn


@pytest.mark.parametrize("bits", [1, 2, 3, 4, 8])
@pytest.mark.parametrize("per_channel", [True, False])
def test_weight_init_reproduces_the_search_weights(bits: int, per_channel: bool) -> None:
    """max-abs init gives exactly the weights the search scored (fake_quantize_weight)."""
    w = torch.randn(6, 4, 3, 3, generator=torch.Generator().manual_seed(bits))
    q = LSQWeightQuantizer.from_weight(w, bits, per_channel)
    expected = binarize_weight(w, per_channel) if bits == 1 else fake_quantize_weight(w, bits, per_channel)
    assert torch.allclose(q(w), expected, atol=1e-6)
    levels = q.integer_levels(w).float()
    steps = q.steps().reshape(-1, 1, 1, 1) if per_channel else q.steps()
    assert torch.allclose(levels * steps, q(w).detach(), atol=1e-6)
    assert q.step.numel() == (6 if per_channel else 1)


@pytest.mark.parametrize(("bits", "signed"), [(2, False), (4, False), (2, True), (4, True), (8, True)])
def test_act_init_reproduces_the_search_activations(bits: int, signed: bool) -> None:
    x = torch.randn(8, 3, 5, 5, generator=torch.Generator().manual_seed(bits))
    x = x if signed else x.relu()
    clip = 1.7
    q = LSQActQuantizer.from_clip(clip, bits, signed)
    assert torch.allclose(q(x), ActQuantParams.from_clip(clip, bits, signed)(x), atol=1e-6)


def test_step_gradient_is_lsq_times_the_gradient_scale() -> None:
    """d x_hat / d s = round(x/s) - x/s inside, qmin/qmax outside, times 1/sqrt(N Qp)."""
    x = torch.tensor([[-3.0, -0.26, 0.1, 0.74, 2.9]])
    step = torch.tensor(0.5, requires_grad=True)
    out = lsq_fake_quantize(x, step, -2, 1, gradient_scale=0.25)
    out.sum().backward()
    v = x / 0.5
    inside = (v >= -2) & (v <= 1)
    expected = torch.where(inside, torch.round(v) - v, torch.where(v < -2, -2.0, 1.0)).sum() * 0.25
    assert step.grad is not None and math.isclose(float(step.grad), float(expected), rel_tol=1e-6)
    assert lsq_grad_scale(x.numel(), 1) == pytest.approx(1 / math.sqrt(5))


def test_input_gradient_is_straight_through_inside_the_range() -> None:
    x = torch.tensor([-5.0, -0.3, 0.2, 0.4, 5.0], requires_grad=True)
    q = LSQActQuantizer(2, signed=True, step=0.5)
    q(x.unsqueeze(0)).sum().backward()
    assert x.grad is not None and x.grad.tolist() == [0.0, 1.0, 1.0, 1.0, 0.0]


@pytest.mark.parametrize(("qmin", "qmax", "zero"), [(0, 255, 0), (-128, 127, 0), (0, 15, 3), (-8, 7, -2), (-2, 1, 0)])
@pytest.mark.parametrize("step", [0.05, 0.0173, 1e-3, 0.3333, 2.7])
def test_inference_path_is_bit_exact_with_torchs_fake_quantize_kernel(qmin: int, qmax: int, zero: int,
                                                                      step: float) -> None:
    """Without gradients lsq_fake_quantize runs its own in-place passes (faster than torch's
    kernel): every value, ties at half steps included, is torch's to the bit."""
    x = torch.randn(20000, generator=torch.Generator().manual_seed(1)) * step * qmax * 1.3
    x[:1000] = (torch.arange(1000) - 500 + 0.5) * step  # exact ties: round half to even
    s = torch.tensor(step)
    with torch.no_grad():
        ours = lsq_fake_quantize(x, s, qmin, qmax, zero_point=torch.tensor(float(zero)))
    reference = torch.fake_quantize_per_tensor_affine(x, float(s), zero, qmin, qmax)
    assert torch.equal(ours, reference)


def test_zero_point_is_an_integer_and_matches_the_native_asymmetric_grid() -> None:
    """The LSQ+ zero point is rounded in the forward: exactly torch's (and ONNX's) affine grid."""
    x = torch.randn(4, 50, generator=torch.Generator().manual_seed(0)) + 0.8
    q = LSQActQuantizer(3, signed=True, step=0.3, zero_point=-1.4, learn_zero_point=True)
    assert q.integer_zero_point == -1
    native = torch.fake_quantize_per_tensor_affine(x, 0.3, -1, -4, 3)
    assert torch.allclose(q(x), native, atol=1e-6)
    assert q.range == pytest.approx(((-4 + 1) * 0.3, (3 + 1) * 0.3))
    q(x).pow(2).sum().backward()
    assert q.zero_point.grad is not None and torch.isfinite(q.zero_point.grad)


def test_learning_the_step_lowers_the_2bit_error_of_max_abs() -> None:
    """A few Adam steps on the MSE move a 2-bit max-abs step to a clearly better one."""
    w = torch.randn(16, 64, generator=torch.Generator().manual_seed(1))
    q = LSQWeightQuantizer.from_weight(w, 2, per_channel=True)
    start = float((q(w) - w).detach().pow(2).mean())
    optimizer = torch.optim.Adam([q.step], lr=0.02)
    for _ in range(100):
        optimizer.zero_grad()
        (q(w) - w).pow(2).mean().backward()
        optimizer.step()
    end = float((q(w) - w).detach().pow(2).mean())
    assert end < 0.6 * start


def test_lsq_init_is_twice_mean_abs_over_sqrt_qp() -> None:
    w = torch.randn(3, 10)
    step = initial_weight_step(w, 4, per_channel=True, init="lsq")
    assert torch.allclose(step, 2 * w.abs().mean(1) / math.sqrt(7))
    with pytest.raises(PolicyError, match="weight step init 'mse' must be one of max_abs, lsq"):
        initial_weight_step(w, 4, init="mse")


def test_parametrized_layer_trains_and_steps_stay_out_of_weight_decay() -> None:
    model = tiny_cnn()
    for module in model.modules():
        if isinstance(module, nn.Conv2d | nn.Linear):
            parametrize.register_parametrization(
                module, "weight", LSQWeightQuantizer.from_weight(module.weight, 3))
    act = LSQActQuantizer(3, signed=True, step=0.2, learn_zero_point=True)
    model.insert(0, act)
    steps = step_parameters(model)
    assert len(steps) == 4 + 2  # 4 weight steps, 1 activation step, 1 zero point
    decay, no_decay, step_group = split_decay_parameters(model)
    ids = {id(p) for p in step_group}
    assert ids == {id(p) for p in steps}
    assert not ids & {id(p) for p in decay + no_decay}
    assert all(p.dim() > 1 for p in decay) and all(p.dim() <= 1 for p in no_decay)
    model.train()
    out = model(torch.randn(4, 1, 12, 12))
    out.sum().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in steps)


def test_bad_steps_are_one_line_errors() -> None:
    with pytest.raises(PolicyError, match="weight steps must be finite and > 0"):
        LSQWeightQuantizer(4, torch.tensor([0.1, float("nan")]))
    with pytest.raises(PolicyError, match="activation step -1.0 must be finite and > 0"):
        LSQActQuantizer(4, signed=False, step=-1.0)
    with pytest.raises(PolicyError, match="no zero point"):
        LSQActQuantizer(4, signed=False, step=0.1, zero_point=2.0)
    with pytest.raises(PolicyError, match="signed activation needs >= 2 bits"):
        LSQActQuantizer(1, signed=True, step=0.1)


def _composed_lsq(x, step, qmin, qmax, gradient_scale, zero_point=None, channel_axis=None):
    """LSQ written as a composition of differentiable ops: the reference of the fused node."""
    from haq_rl.quant.lsq import grad_scale, round_ste

    s = grad_scale(step, gradient_scale).abs().clamp_min(1e-8)
    if channel_axis is not None and s.numel() > 1:
        shape = [1] * x.dim()
        shape[channel_axis] = -1
        s = s.reshape(shape)
    else:
        s = s.reshape(())
    v = x / s
    if zero_point is None:
        return round_ste(torch.clamp(v, qmin, qmax)) * s
    z = round_ste(grad_scale(zero_point, gradient_scale).clamp(qmin, qmax)).reshape(())
    return round_ste(torch.clamp(v, qmin - z, qmax - z)) * s


@pytest.mark.parametrize("case", ["per_tensor", "per_channel", "zero_point", "negative_step"])
def test_fused_lsq_equals_the_composed_ops_in_values_and_gradients(case: str) -> None:
    generator = torch.Generator().manual_seed(3)
    x0 = torch.randn(6, 4, 5, 5, generator=generator) * 2
    grad_out = torch.randn(6, 4, 5, 5, generator=generator)
    per_channel = case == "per_channel"
    step0 = torch.rand(6, generator=generator) * 0.5 + 0.1 if per_channel else torch.tensor(0.37)
    if case == "negative_step":
        step0 = -step0
    zero0 = torch.tensor(-1.3) if case == "zero_point" else None
    results = []
    for function in (lsq_fake_quantize, _composed_lsq):
        x = x0.clone().requires_grad_(True)
        step = step0.clone().requires_grad_(True)
        zero = zero0.clone().requires_grad_(True) if zero0 is not None else None
        out = function(x, step, -4, 3, 0.125, zero, 0 if per_channel else None)
        (out * grad_out).sum().backward()
        results.append((out.detach(), x.grad, step.grad, None if zero is None else zero.grad))
    fused, composed = results
    for ours, reference in zip(fused, composed, strict=True):
        if reference is None:
            assert ours is None
        else:
            assert torch.allclose(ours, reference, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("case", ["per_tensor", "per_channel", "zero_point"])
def test_inference_kernels_compute_the_training_grid(case: str) -> None:
    """Without gradients the quantizer runs torch's fused kernels: the same grid as the
    training path (x / s there, x * (1 / s) in the kernel: at most a rare one-step flip)."""
    generator = torch.Generator().manual_seed(5)
    x = torch.randn(8, 6, 7, 7, generator=generator) * 3
    per_channel = case == "per_channel"
    step = (torch.rand(8, generator=generator) * 0.5 + 0.1) if per_channel else torch.tensor(0.29)
    zero = torch.tensor(-2.2) if case == "zero_point" else None
    step.requires_grad_(True)
    trained = lsq_fake_quantize(x, step, -8, 7, 0.1, zero, 0 if per_channel else None)
    with torch.no_grad():
        inferred = lsq_fake_quantize(x, step, -8, 7, 0.1, zero, 0 if per_channel else None)
    differ = ~torch.isclose(trained.detach(), inferred, atol=1e-6)
    assert float(differ.float().mean()) < 1e-3
