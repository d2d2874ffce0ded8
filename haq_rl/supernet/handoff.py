"""From the supernet to the model a user keeps: one policy's weights and steps as a QAT model.

The ``supernet`` row of the start table (:mod:`haq_rl.task.sources`): the fine-tune
(``start`` supernet, or auto on a supernet or predictor reward), ``evaluate`` and ``export``
start from what the supernet reward scored: the shared latent weights, the learned steps of the policy's widths and BatchNorm
statistics re-estimated for the policy. The result is an ordinary model prepared by
:func:`haq_rl.quant.prepare_qat` (LSQ quantizers), so training it, saving it as
``finetuned.pt``, ``evaluate`` and ``export`` are the paths every other model takes.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import torch
from torch import nn

from haq_rl.quant import QuantPolicy, prepare_qat
from haq_rl.quant.layers import quantizable_modules
from haq_rl.quant.lsq import LSQActQuantizer, LSQWeightQuantizer
from haq_rl.supernet.reward import evaluation_layout, policy_bn_inputs, supernet_config
from haq_rl.supernet.train import train_supernet
from haq_rl.task.sources import StartSettings
from haq_rl.training import reestimate_batchnorm


@torch.no_grad()
def supernet_start(task: Any, policy: QuantPolicy, settings: StartSettings | None = None,
                   device: torch.device | str = "cpu", progress: bool = True) -> nn.Module:
    """The task's supernet at ``policy`` as a model prepared for QAT (LSQ), on ``device``.

    Trains the supernet first when the cache has none. The model computes exactly what the
    supernet computes at ``policy`` after its BatchNorm re-estimation. Of ``settings`` only
    ``zero_point`` is read: the start table lets this start take LSQ unfolded only.
    """
    settings = settings or StartSettings()
    trained = train_supernet(task, supernet_config(task), progress=progress)
    supernet = trained.supernet
    policy = supernet.apply(policy)
    try:
        inputs = evaluation_layout(supernet.model, [x.to(task.device) for x in policy_bn_inputs(task)])
        reestimate_batchnorm(supernet.model, inputs)
        steps = supernet.steps_at(policy.w_bits, policy.a_bits)
        model = supernet.float_model().to(memory_format=torch.contiguous_format)  # type: ignore[call-overload]
    finally:
        supernet.restore()
    # The supernet's weights are on a linear grid whatever the task's weight method (a
    # k-means codebook of 2^w entries can hold any such grid, so its size cost still holds).
    # Every step is the supernet's (copied below), so the calibration only needs the inputs'
    # signs: max-abs clips skip the histogram pass (a third of a 1-epoch fine-tune's time).
    config = dataclasses.replace(task.quant_config, weight_method="linear", act_calibration="max")
    calibration = [x.to(task.device) for x in task.calibration_inputs()]
    prepare_qat(model, policy, config, calibration, quantizer="lsq", zero_point=settings.zero_point)
    for name, module in quantizable_modules(model):
        weight = module.parametrizations.weight[0]  # type: ignore[union-attr,index]
        act = module.act_quant
        assert isinstance(weight, LSQWeightQuantizer) and isinstance(act, LSQActQuantizer)
        weight.step.copy_(steps[name]["w_step"])
        act.step.copy_(steps[name]["a_step"])
        act.zero_point.copy_(steps[name]["a_zero_point"])
    return model.eval().to(device)
