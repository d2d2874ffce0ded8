"""Which model stands at a policy: one home for the fine-tune, ``evaluate`` and ``export``.

Without a fine-tuned checkpoint the model is a start of :mod:`haq_rl.task.sources`' start
table (``float``: the float weights, calibrated as the search's post-training
quantization; ``supernet``: the supernet's weights and the policy's learned steps), and
``auto`` is the start of the task's reward source: the model its reward scored. With a
checkpoint it is the checkpoint's model, which must hold the same policy. The start x
quantizer x fold_bn rule is checked in one place (:func:`haq_rl.task.sources.check_start`)
and raises ConfigError.
"""

from __future__ import annotations

import copy
import logging
from typing import Any

import torch
from torch import nn

from haq_rl.errors import CheckpointError, PolicyError, UnknownNameError
from haq_rl.finetune.checkpoint import float_structure, load_finetuned, load_quantized_model
from haq_rl.quant import QuantPolicy, export_qat, prepare_qat
from haq_rl.quant.fold import fold_batchnorm
from haq_rl.task.sources import ModelStart, StartSettings, check_start, model_start
from haq_rl.task.task import Task

logger = logging.getLogger(__name__)


def float_start(task: Task, policy: QuantPolicy, settings: StartSettings, device: torch.device | str = "cpu",
                progress: bool = True) -> nn.Module:
    """The ``float`` start: a copy of the task's float model (BN-folded if asked) prepared
    for QAT; weight scales and activation clips start from the search's calibration, so
    before any training it computes what the post-training reward scored (up to the fold)."""
    model = copy.deepcopy(task.model).to(device)
    calibration = [x.to(device) for x in task.calibration_inputs()]
    if settings.fold_bn:
        fold_batchnorm(model, calibration[0])
    prepare_qat(model, policy, task.quant_config, calibration, quantizer=settings.quantizer,
                zero_point=settings.zero_point)
    return model


def start_of(task: Task, start: str = "auto") -> ModelStart:
    """The start row ``start`` names for ``task`` (``auto``: its reward source's)."""
    return model_start(start, task.spec.reward_source)


def model_at_policy(task: Task, policy: QuantPolicy, *, start: str = "auto",
                    settings: StartSettings | None = None, device: torch.device | str | None = None,
                    progress: bool = True) -> nn.Module:
    """The model ``start`` puts at ``policy``, fake-quantized per ``settings``, on ``device``
    (None: the task's). ConfigError (one line) when the start cannot take ``settings``,
    whether it was named or picked by ``auto``."""
    settings = settings or StartSettings()
    row = start_of(task, start)
    check_start(row, settings, picked_by=task.spec.reward_source if start == "auto" else None)
    return row.load()(task, policy, settings, task.device if device is None else device, progress=progress)


def checkpoint_policy(task: Task, payload: dict[str, Any], source: str, given: QuantPolicy | None) -> QuantPolicy:
    """The policy a fine-tuned checkpoint holds, checked against the task's model and ``given``.

    Raises CheckpointError when it is unreadable or does not fit the model, PolicyError
    when ``given`` is another policy.
    """
    try:
        saved = QuantPolicy.from_dict(payload["policy"])
    except PolicyError as error:
        raise CheckpointError(f"{source}: unreadable policy: {error}") from None
    saved_model = payload["meta"].get("model")
    if saved_model is not None and saved_model != task.spec.model:
        raise CheckpointError(f"{source} holds a fine-tuned {saved_model!r}, but env "
                              f"{task.spec.id} uses {task.spec.model!r} (pass --model {saved_model} or --env)")
    bits = (task.quant_config.min_bits, task.quant_config.max_bits)
    try:  # the checkpoint against the model first: a layer it lacks is its fault, not the model's
        saved = saved.validate(task.layer_names, *bits)
    except (PolicyError, UnknownNameError) as error:
        raise CheckpointError(f"{source} does not fit {task.spec.model!r}: {error}") from None
    if given is not None and given.validate(task.layer_names, *bits) != saved:
        raise PolicyError(f"{source} was fine-tuned with a different policy than the one given")
    return saved


def exportable_model(task: Task, policy: QuantPolicy, checkpoint: str | Any | None = None,
                     warn: bool = True) -> tuple[nn.Module, nn.Module, dict[str, Any]]:
    """What ``haq-rl export`` writes at ``policy``: ``(model, plain, quant)``, the
    fake-quantized model, a plain copy of the task's model holding its quantized weights,
    and its quantizer parameters (``export_qat``'s ``quant``).

    From the fine-tuned ``checkpoint`` when given, else from the task's ``auto`` start (the
    model its reward scored), with a warning that it is not fine-tuned (``warn=False`` where the
    file is only timed: its weights do not change its latency).
    """
    if checkpoint is not None:
        payload = load_finetuned(checkpoint)
        checkpoint_policy(task, payload, str(checkpoint), policy)
        # A BN-folded checkpoint has the folded structure; its learned steps are in quant.
        return (load_quantized_model(task, payload, source=str(checkpoint)),
                float_structure(task, payload, source=str(checkpoint)), payload["quant_params"])
    if warn:
        logger.warning("exporting the %s model at the policy, not fine-tuned (run haq-rl finetune first)",
                       start_of(task).name)
    model = model_at_policy(task, policy)
    exported = export_qat(model)
    plain = copy.deepcopy(task.model)
    plain.load_state_dict(exported["state_dict"])
    return model, plain, exported["quant"]
