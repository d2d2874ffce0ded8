"""BatchNorm folding: merge each BatchNorm that directly follows a conv into its weights.

``w' = w * gamma / sqrt(var + eps)`` per output channel and
``b' = beta + (b - mean) * gamma / sqrt(var + eps)`` (Jacob et al., CVPR 2018, section 3.2);
the BatchNorm becomes ``nn.Identity``. Integer-only hardware and the ONNX export compute
the folded conv, so quantizing after folding is what they run. The fold is exact in eval
mode (checked on the example input); the folded model trains without BatchNorm.

Pairs are found by running the model once: a BatchNorm whose input tensor is the output
of a Conv2d (with as many channels) follows that conv. A conv whose output also feeds
something else would change meaning when folded; the output check catches it.
"""

from __future__ import annotations

import logging

import torch
from torch import nn

from haq_rl.errors import ConfigError

from .outputs import logits_of

log = logging.getLogger(__name__)

_BN_TYPES = (nn.BatchNorm2d,)


@torch.no_grad()
def conv_bn_pairs(model: nn.Module, example: torch.Tensor) -> list[tuple[str, str]]:
    """``(conv_name, bn_name)`` for every BatchNorm2d fed directly by a Conv2d (eval forward)."""
    names = {id(m): n for n, m in model.named_modules()}
    # id of a conv output -> (conv name, the tensor): holding the tensor keeps its id unique.
    outputs: dict[int, tuple[str, torch.Tensor]] = {}
    pairs: list[tuple[str, str]] = []
    uses: dict[str, int] = {}

    def conv_hook(module: nn.Module, _args: tuple, out: torch.Tensor) -> None:
        outputs[id(out)] = (names[id(module)], out)

    def bn_hook(module: nn.Module, args: tuple) -> None:
        found = outputs.get(id(args[0]))
        if found is not None:
            conv = found[0]
            uses[conv] = uses.get(conv, 0) + 1
            pairs.append((conv, names[id(module)]))

    handles = [m.register_forward_hook(conv_hook) for m in model.modules() if isinstance(m, nn.Conv2d)]
    handles += [m.register_forward_pre_hook(bn_hook) for m in model.modules() if isinstance(m, _BN_TYPES)]
    was_training = model.training
    model.eval()
    try:
        model(example)
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    # A conv or BN run twice (shared modules) cannot be folded once.
    return [(c, b) for c, b in pairs if uses[c] == 1 and sum(bn == b for _, bn in pairs) == 1]


@torch.no_grad()
def fold_batchnorm(model: nn.Module, example: torch.Tensor, atol: float = 1e-3) -> list[tuple[str, str]]:
    """Fold every conv -> BatchNorm pair of ``model`` in place; returns the folded pairs.

    Raises ConfigError when the folded model's eval output differs from the original's on
    ``example`` by more than ``atol`` relative to its scale (a conv output that is also
    used elsewhere).
    """
    was_training = model.training
    model.eval()
    before = logits_of(model(example))
    pairs = conv_bn_pairs(model, example)
    modules = dict(model.named_modules())
    for conv_name, bn_name in pairs:
        conv, bn = modules[conv_name], modules[bn_name]
        assert isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d)
        mean = bn.running_mean if bn.running_mean is not None else torch.zeros(bn.num_features)
        var = bn.running_var if bn.running_var is not None else torch.ones(bn.num_features)
        gamma = bn.weight if bn.weight is not None else torch.ones_like(mean)
        beta = bn.bias if bn.bias is not None else torch.zeros_like(mean)
        factor = gamma / torch.sqrt(var + bn.eps)
        conv.weight.mul_(factor.reshape(-1, 1, 1, 1))
        bias = conv.bias if conv.bias is not None else torch.zeros_like(mean)
        new_bias = beta + (bias - mean) * factor
        if conv.bias is None:
            conv.bias = nn.Parameter(new_bias.clone())
        else:
            conv.bias.copy_(new_bias)
        parent_name, _, child = bn_name.rpartition(".")
        parent = modules[parent_name] if parent_name else model
        setattr(parent, child, nn.Identity())
    after = logits_of(model(example))
    model.train(was_training)
    tolerance = atol * max(float(before.abs().max()), 1.0)
    error = float((after - before).abs().max())
    if error > tolerance:
        raise ConfigError(f"BatchNorm folding changed the model's output by {error:.3g} "
                          f"(> {tolerance:.3g}); a folded conv output is used elsewhere (use fold_bn=false)")
    log.info("folded %d BatchNorm layers into their convolutions", len(pairs))
    return pairs
