"""PolicyApplier: in place (no deepcopy), cached, bit-identical switching and restore."""

from __future__ import annotations

import copy

import pytest
import torch

from haq_rl.errors import ConfigError, PolicyError, UnknownNameError
from haq_rl.quant import PolicyApplier, QuantConfig, QuantPolicy

from .helpers import calib_batches, tiny_cnn


@pytest.fixture()
def setup():
    model = tiny_cnn()
    applier = PolicyApplier(model, calib_batches())
    x = calib_batches(1, 8, seed=7)[0]
    return model, applier, x


def test_layer_names(setup) -> None:
    _, applier, _ = setup
    assert applier.layer_names == ["0", "3", "5", "8"]
    assert applier.policy is None


def test_apply_never_copies(setup, monkeypatch) -> None:
    model, applier, x = setup

    def boom(*_a, **_k):
        raise AssertionError("deepcopy called")

    monkeypatch.setattr(copy, "deepcopy", boom)
    params = {n: (p, p.data_ptr()) for n, p in model.named_parameters()}
    policy = QuantPolicy.uniform(applier.layer_names, 4, 4)
    applier.apply(policy)
    assert applier.policy == policy
    # same Parameter objects, biases and BN untouched
    for n, p in model.named_parameters():
        assert p is params[n][0]
        if not n.endswith("weight") or n.startswith("1."):
            assert p.data_ptr() == params[n][1]
    with torch.no_grad():
        model(x)
    applier.restore()
    for n, p in model.named_parameters():  # restore re-points at the original storage
        assert p.data_ptr() == params[n][1]


def test_restore_bit_identical(setup) -> None:
    model, applier, x = setup
    with torch.no_grad():
        ref = model(x)
        applier.apply(QuantPolicy.uniform(applier.layer_names, 2, 2))
        quant = model(x)
        applier.restore()
        assert not torch.equal(quant, ref)
        assert torch.equal(model(x), ref)
        assert applier.policy is None


def test_switching_is_bit_identical(setup) -> None:
    model, applier, x = setup
    names = applier.layer_names
    p1 = QuantPolicy.from_arrays(names, [8, 4, 3, 2], [8, 6, 5, 4])
    p2 = QuantPolicy.from_arrays(names, [2, 5, 8, 6], [3, 8, 2, 7])
    with torch.no_grad():
        applier.apply(p1)
        out1 = model(x)
        applier.apply(p2)
        out2 = model(x)
        applier.apply(p1)
        assert torch.equal(model(x), out1)
        applier.apply(p2)
        assert torch.equal(model(x), out2)
        assert not torch.equal(out1, out2)
    # a fresh applier on a fresh copy of the model gives the same numbers (no hidden state)
    other = tiny_cnn()
    with PolicyApplier(other, calib_batches()) as fresh, torch.no_grad():
        fresh.apply(p2)
        assert torch.equal(other(x), out2)
    assert fresh.policy is None


def test_context_manager_restores(setup) -> None:
    model, applier, x = setup
    with torch.no_grad():
        ref = model(x)
        with applier:
            applier.apply(QuantPolicy.uniform(applier.layer_names, 3, 3))
        assert torch.equal(model(x), ref)


def test_weight_levels_through_applier(setup) -> None:
    model, applier, _ = setup
    applier.apply(QuantPolicy.uniform(applier.layer_names, 3, 3))
    for _, m in applier._layers.items():
        for row in m.weight.detach().flatten(1):
            assert row.unique().numel() <= 2 ** 3 - 1
    applier.restore()


def test_caches_are_reused(setup) -> None:
    _, applier, _ = setup
    name = applier.layer_names[1]
    assert applier.quantized_weight(name, 4) is applier.quantized_weight(name, 4)
    assert applier.act_params(name, 4) is applier.act_params(name, 4)


@pytest.mark.parametrize("method", ["max", "percentile", "mse", "kl"])
def test_calibration_methods_apply(method: str) -> None:
    model = tiny_cnn()
    applier = PolicyApplier(model, calib_batches(), QuantConfig(act_calibration=method))
    x = calib_batches(1, 8, seed=3)[0]
    with torch.no_grad():
        ref = model(x)
        applier.apply(QuantPolicy.uniform(applier.layer_names, 8, 8))
        assert torch.allclose(model(x), ref, atol=0.05 * float(ref.abs().max()))
    applier.restore()


def test_bad_policies_leave_model_untouched(setup) -> None:
    model, applier, x = setup
    names = applier.layer_names
    with torch.no_grad():
        ref = model(x)
    with pytest.raises(UnknownNameError, match="did you mean '3'"):
        applier.apply(QuantPolicy.uniform(["0", "33", "5", "8"], 4, 4))
    with pytest.raises(PolicyError, match="outside the allowed range"):
        applier.apply(QuantPolicy.uniform(names, 9, 4))
    with pytest.raises(PolicyError, match="outside the allowed range"):
        applier.apply(QuantPolicy.uniform(names, 4, 1))
    with pytest.raises(PolicyError, match="does not match this model"):
        applier.apply(QuantPolicy.uniform(["conv1", "conv2", "fc1", "fc2", "fc3"], 4, 4))
    with torch.no_grad():
        assert torch.equal(model(x), ref)
    assert applier.policy is None


def test_one_bit_weights_and_signed_one_bit_input() -> None:
    model = tiny_cnn()
    applier = PolicyApplier(model, calib_batches(), QuantConfig(min_bits=1))
    names = applier.layer_names
    # unsigned inputs (after ReLU) may take 1 bit; the signed network input may not
    applier.apply(QuantPolicy.from_arrays(names, [1, 1, 1, 1], [2, 1, 1, 2]))
    assert model[3].weight.detach().flatten(1)[0].unique().numel() <= 2
    with pytest.raises(PolicyError, match="layer '0'.*signed activation"):
        applier.apply(QuantPolicy.uniform(names, 2, 1))
    applier.restore()


def test_bad_config_and_inputs() -> None:
    with pytest.raises(ConfigError, match="act_calibration='entropy'"):
        QuantConfig(act_calibration="entropy")
    with pytest.raises(ConfigError, match="min_bits=5 must be <= max_bits=4"):
        QuantConfig(min_bits=5, max_bits=4)
    with pytest.raises(ConfigError, match="percentile"):
        QuantConfig(percentile=120)
    with pytest.raises(ConfigError, match="at least one input batch"):
        PolicyApplier(tiny_cnn(), [])
    with pytest.raises(ConfigError, match="no Conv2d or Linear"):
        PolicyApplier(torch.nn.ReLU(), calib_batches())


def test_kmeans_method_levels(setup) -> None:
    model = tiny_cnn()
    applier = PolicyApplier(model, calib_batches(), QuantConfig(weight_method="kmeans"))
    applier.apply(QuantPolicy.uniform(applier.layer_names, 3, 8))
    for m in applier._layers.values():
        assert m.weight.detach().unique().numel() <= 2 ** 3
    applier.restore()


def test_refresh_after_weights_change(setup) -> None:
    model, applier, x = setup
    policy = QuantPolicy.uniform(applier.layer_names, 8, 8)
    applier.apply(policy)
    applier.restore()
    with torch.no_grad():
        model[0].weight.mul_(0.5)
    applier.refresh()
    applier.apply(policy)
    assert torch.allclose(model[0].weight, applier._float["0"], atol=0.05)
    applier.restore()
