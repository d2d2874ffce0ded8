"""Layers a policy keeps in float: a weight width of 16 or 32 bits means "not quantized".

On onnxruntime's CPU provider a layer runs either as float kernels or as a fused INT8 one
(issue 38): a policy that mixes them marks its float layers with ``w_bits`` 16 or 32 (its
``a_bits`` is then ignored: the layer's input stays float too). The export quantizes the
other layers as usual and leaves these as torch exported them: their float weights, no
quantizer on their input. A float layer that reads an INT8 layer gets that layer's output
on a calibrated 8-bit grid (the ``ort`` form), dequantized; an INT8 layer after a float one
quantizes its input as always.

Only the post-training model has float layers: a fine-tuned checkpoint holds every layer
quantized (``haq-rl finetune`` trains all of them).
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

import torch

from haq_rl.errors import ConfigError
from haq_rl.quant import QuantPolicy
from haq_rl.quant.layers import quantizable_modules
from haq_rl.quant.qat import act_pre_hook, frozen_act_quantizer
from haq_rl.task.task import Task

#: Weight widths that mark a layer float.
FLOAT_WIDTHS = (16, 32)


def split_float_layers(policy: QuantPolicy, task: Task) -> tuple[QuantPolicy, list[str]]:
    """(the policy with each float layer standing in at the task's widest bits, the float layers).

    The stand-in lets the quantized layers be prepared and calibrated as for any policy; the
    float layers' quantizers are dropped again by :func:`keep_float`. A policy of float layers
    only is a ConfigError: there is nothing to quantize.
    """
    floats = [name for name, (w_bits, _) in policy.items() if w_bits in FLOAT_WIDTHS]
    if not floats:
        return policy, []
    if len(floats) == len(policy.layer_names):
        raise ConfigError("the policy keeps every layer float (w_bits 16/32): nothing to quantize; "
                          "export the float model instead")
    widest = task.quant_config.max_bits
    standing_in = QuantPolicy({name: (widest, widest) if name in floats else bits for name, bits in policy.items()},
                              policy.metadata)
    return standing_in, floats


def keep_float(task: Task, plain: torch.nn.Module, quant: dict[str, Any], floats: Sequence[str]
               ) -> tuple[torch.nn.Module, torch.nn.Module, dict[str, Any]]:
    """(the reference, the plain model, the quantizer parameters) with ``floats`` back to float.

    The plain model gets the float layers' original weights back; the reference is the plain
    model with the frozen activation quantizer of every quantized layer (as a fine-tuned
    checkpoint is loaded), so PyTorch computes what the exported graph computes.
    """
    original = dict(task.model.named_parameters())
    kept = {name: params for name, params in quant.items() if name not in floats}
    state = plain.state_dict()
    for name in floats:
        state[f"{name}.weight"] = original[f"{name}.weight"].detach().clone().to(state[f"{name}.weight"].device)
    plain = copy.deepcopy(plain)
    plain.load_state_dict(state)
    reference = copy.deepcopy(plain)
    for name, module in quantizable_modules(reference):
        if name in kept:
            module.add_module("act_quant", frozen_act_quantizer(kept[name]))
            module.register_forward_pre_hook(act_pre_hook)
    return reference.eval(), plain, kept


def float_storage(floats: Sequence[str]) -> dict[str, dict[str, Any]]:
    """The metadata's ``weight_storage`` entries of the float layers."""
    return {name: {"w_bits": 32, "a_bits": 32, "weight_container": "FLOAT", "activation_container": "FLOAT"}
            for name in floats}
