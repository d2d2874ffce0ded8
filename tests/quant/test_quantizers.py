"""Quantizer level counts, signedness and error monotonicity (on real layers)."""

from __future__ import annotations

import pytest
import torch

from haq_rl.errors import PolicyError
from haq_rl.quant import (
    ActQuantParams,
    PolicyApplier,
    QuantConfig,
    QuantPolicy,
    fake_quantize_act,
    fake_quantize_weight,
)

from .helpers import calib_batches, tiny_cnn


@pytest.mark.parametrize("bits", range(2, 9))
@pytest.mark.parametrize("per_channel", [True, False])
def test_weight_levels(bits: int, per_channel: bool) -> None:
    w = torch.randn(4, 8, 5, 5) * 3
    q = fake_quantize_weight(w, bits, per_channel)
    rows = q.flatten(1) if per_channel else q.reshape(1, -1)
    for row in rows:  # one scale per row: the grid of that row
        assert row.unique().numel() <= 2 ** bits - 1
    # symmetric: zero is exact and the largest magnitude is kept
    assert torch.allclose(q.abs().flatten(1).amax(1), w.abs().flatten(1).amax(1), rtol=1e-5) \
        if per_channel else torch.isclose(q.abs().max(), w.abs().max())


def test_binary_weights() -> None:
    w = torch.randn(3, 10)
    q = fake_quantize_weight(w, 1, per_channel=True)
    for row, orig in zip(q, w, strict=True):
        assert row.unique().numel() <= 2
        assert torch.allclose(row.abs(), orig.abs().mean().expand_as(row))


@pytest.mark.parametrize("bits", range(1, 9))
def test_unsigned_act_levels(bits: int) -> None:
    x = torch.rand(10_000) * 6
    q = fake_quantize_act(x, 6.0, bits, signed=False)
    assert q.unique().numel() <= 2 ** bits
    assert q.min() >= 0


@pytest.mark.parametrize("bits", range(2, 9))
def test_signed_act_levels(bits: int) -> None:
    x = torch.randn(10_000) * 2
    q = fake_quantize_act(x, 2.0, bits, signed=True)
    assert q.unique().numel() <= 2 ** bits
    assert q.min() < 0  # a signed input is never clamped to >= 0


def test_signed_one_bit_rejected() -> None:
    with pytest.raises(PolicyError, match="signed activation needs >= 2 bits"):
        ActQuantParams.from_clip(1.0, 1, signed=True)


def test_ste_gradient() -> None:
    w = torch.randn(4, 3, requires_grad=True)
    fake_quantize_weight(w, 4, True).sum().backward()
    assert torch.equal(w.grad, torch.ones_like(w))


def _real_layers():
    """Layers of a zoo model (real shapes/initialisations)."""
    models = pytest.importorskip("haq_rl.models")
    torch.manual_seed(0)
    model = models.build_model("mobilenetv2").eval()
    return model, models.quantizable_layers(model)


def test_weight_error_decreases_with_bits_on_real_layers() -> None:
    _, layers = _real_layers()
    for name, module in layers[::4] + layers[-1:]:  # a spread of conv/depthwise/linear layers
        w = module.weight.detach()
        errs = [float((fake_quantize_weight(w, b) - w).pow(2).mean()) for b in range(2, 9)]
        assert all(a > b for a, b in zip(errs, errs[1:], strict=False)), (name, errs)


@pytest.mark.parametrize("method", ["max", "percentile", "mse", "kl"])
def test_activation_error_decreases_with_bits(method: str) -> None:
    """Per layer input error (float upstream) is monotone in a_bits for every method."""
    model = tiny_cnn()
    cal = calib_batches()
    applier = PolicyApplier(model, cal, QuantConfig(act_calibration=method))
    inputs: dict[str, torch.Tensor] = {}
    hooks = [m.register_forward_pre_hook(
        lambda _m, a, n=n: inputs.__setitem__(n, a[0].detach()))
        for n, m in dict(applier._layers).items()]
    with torch.no_grad():
        model(cal[0])
    for h in hooks:
        h.remove()
    for name, x in inputs.items():
        errs = [float((applier.act_params(name, b)(x) - x).pow(2).mean()) for b in range(2, 9)]
        assert all(a >= b for a, b in zip(errs, errs[1:], strict=False)), (method, name, errs)


def test_signedness_from_calibration() -> None:
    model = tiny_cnn()
    applier = PolicyApplier(model, calib_batches())
    stats = applier.input_stats
    names = applier.layer_names
    assert stats[names[0]].signed  # the network input (normalised data) stays signed
    assert not stats[names[1]].signed  # after ReLU
    assert not stats[names[2]].signed  # after ReLU6
    applier.apply(QuantPolicy.uniform(names, 4, 4))
    assert applier.act_params(names[0], 4).qmin < 0
    assert applier.act_params(names[1], 4).qmin == 0
    applier.restore()


@pytest.mark.parametrize("signed", [False, True])
def test_fast_eval_hook_is_bit_identical_to_native(signed: bool) -> None:
    """The no-grad CPU fast path of the applier's hook equals the native fake-quant op."""
    from haq_rl.quant.applier import _ActHook

    g = torch.Generator().manual_seed(0)
    for bits in range(2, 9):
        for clip in (0.013, 3.3):
            params = ActQuantParams.from_clip(clip, bits, signed)
            x = torch.randn(20_000, generator=g) * clip * 1.5
            with torch.no_grad():
                fast = _ActHook(params)(None, (x,))[0]
            native = torch.fake_quantize_per_tensor_affine(x, params.scale, 0, params.qmin,
                                                           params.qmax)
            assert torch.equal(fast, native), (bits, clip)
