"""Quantization-aware training: STE gradients, PACT clip, export/remove round trip."""

from __future__ import annotations

import pytest
import torch

from haq_rl.errors import PolicyError
from haq_rl.quant import (
    PolicyApplier,
    QuantConfig,
    QuantPolicy,
    export_qat,
    prepare_qat,
    remove_qat,
)
from haq_rl.quant.layers import quantizable_modules

from .helpers import calib_batches, tiny_cnn


def _names(model):
    return [n for n, _ in quantizable_modules(model)]


def test_qat_matches_applier_before_training() -> None:
    """Prepared QAT forward == PolicyApplier forward for the same policy and calibration."""
    x = calib_batches(1, 8, seed=5)[0]
    ref_model = tiny_cnn()
    policy = QuantPolicy.from_arrays(_names(ref_model), [8, 4, 3, 2], [8, 6, 5, 4])
    with PolicyApplier(ref_model, calib_batches()) as applier, torch.no_grad():
        applier.apply(policy)
        expected = ref_model(x)
    model = prepare_qat(tiny_cnn(), policy, None, calib_batches())
    with torch.no_grad():
        assert torch.allclose(model(x), expected, atol=1e-5)


@pytest.mark.parametrize("learnable", [False, True])
def test_training_step_and_export(learnable: bool) -> None:
    model = tiny_cnn()
    policy = QuantPolicy.uniform(_names(model), 3, 4)
    prepare_qat(model, policy, QuantConfig(), calib_batches(), learnable_clip=learnable)
    model.train()
    latent = model[0].parametrizations.weight.original
    before = latent.detach().clone()
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    x, y = calib_batches(1, 16)[0], torch.randint(0, 10, (16,))
    loss = torch.nn.functional.cross_entropy(model(x), y)
    loss.backward()
    assert latent.grad is not None and latent.grad.abs().sum() > 0  # STE reaches the latent
    if learnable:
        assert model[3].act_quant.alpha.grad is not None
    opt.step()
    assert not torch.equal(latent.detach(), before)
    for name, m in quantizable_modules(model):  # forward weights stay on the 3-bit grid
        for row in m.weight.detach().flatten(1):
            assert row.unique().numel() <= 7, name

    exported = export_qat(model)
    assert exported["format_version"] == 1
    assert set(exported["quant"]) == set(_names(model))
    entry = exported["quant"]["5"]
    assert entry["w_bits"] == 3 and entry["a_bits"] == 4 and len(entry["w_scale"]) == 16
    assert not any("act_quant" in k or "parametrizations" in k for k in exported["state_dict"])

    model.eval()
    plain = tiny_cnn(seed=3).eval()
    plain.load_state_dict(exported["state_dict"])  # loads into an unprepared model
    assert torch.equal(plain[5].weight, model[5].weight.detach())

    remove_qat(model)
    assert not hasattr(model[0], "parametrizations") and not hasattr(model[0], "act_quant")
    assert set(model.state_dict()) == set(plain.state_dict())


def test_kmeans_qat_keeps_sharing() -> None:
    model = tiny_cnn()
    config = QuantConfig(weight_method="kmeans")
    prepare_qat(model, QuantPolicy.uniform(_names(model), 2, 8), config, calib_batches())
    model.train()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    model(calib_batches(1)[0]).pow(2).mean().backward()
    opt.step()
    for _, m in quantizable_modules(model):
        assert m.weight.detach().unique().numel() <= 4
    remove_qat(model, bake_weights=True)
    assert model[5].weight.detach().unique().numel() <= 4


def test_prepare_twice_and_bad_policy() -> None:
    model = tiny_cnn()
    names = _names(model)
    prepare_qat(model, QuantPolicy.uniform(names, 4, 4), None, calib_batches())
    with pytest.raises(PolicyError, match="already prepared"):
        prepare_qat(model, QuantPolicy.uniform(names, 4, 4), None, calib_batches())
    remove_qat(model)
    with pytest.raises(PolicyError, match="outside the allowed range"):
        prepare_qat(model, QuantPolicy.uniform(names, 4, 12), None, calib_batches())
    with pytest.raises(PolicyError, match="not prepared"):
        export_qat(model)
