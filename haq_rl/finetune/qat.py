"""Quantization-aware fine-tuning of one policy: the QAT loop, measured on the test split."""

from __future__ import annotations

import copy
import logging
import time
from pathlib import Path

import torch
from torch import nn

from haq_rl.errors import ConfigError, DivergenceError
from haq_rl.finetune.config import FinetuneConfig, FinetuneResult
from haq_rl.finetune.train import teacher_logits, train_qat
from haq_rl.quant import QuantPolicy, export_qat, prepare_qat
from haq_rl.quant.fold import fold_batchnorm
from haq_rl.task.spec import TaskSpec, resolve_spec
from haq_rl.task.task import Task, load_task

logger = logging.getLogger(__name__)

def task_of(task_or_spec: Task | TaskSpec | str | Path, device: str | None = None) -> Task:
    if isinstance(task_or_spec, Task):
        return task_or_spec
    spec = resolve_spec(task_or_spec)
    if device is not None and device != spec.device:
        spec = spec.replace(device=device)
    return load_task(spec)


def test_loader(task: Task) -> torch.utils.data.DataLoader:
    from haq_rl.data import make_loader

    return make_loader(task.splits.test, batch_size=256)


def resolved_start(task: Task, config: FinetuneConfig) -> str:
    """``float`` or ``supernet``: ``auto`` follows the task's reward source."""
    if config.start != "auto":
        return config.start
    return "float" if task.spec.reward_source == "post_training" else "supernet"


def prepare_model(task: Task, policy: QuantPolicy, config: FinetuneConfig, device: torch.device) -> nn.Module:
    """The model a fine-tune of ``policy`` starts from, fake-quantized per ``policy``.

    From ``float``: a copy of the task's float model, BN-folded if asked; activation clips
    and weight scales start from the search's calibration, so before any training the
    model computes what the search scored (up to the BN fold). From ``supernet``: the
    supernet's shared weights with this policy's learned steps and BatchNorm statistics
    re-estimated for it, i.e. exactly what the supernet reward scored.
    """
    if resolved_start(task, config) == "supernet":
        if config.effective_quantizer != "lsq":
            raise ConfigError(f"start=supernet needs quantizer=lsq (the supernet's steps are LSQ steps), "
                              f"not {config.effective_quantizer}")
        from haq_rl.supernet.handoff import supernet_start

        return supernet_start(task, policy, zero_point=config.zero_point).to(device)
    model = copy.deepcopy(task.model).to(device)
    calibration = [x.to(device) for x in task.calibration_inputs()]
    if config.fold_bn:
        fold_batchnorm(model, calibration[0])
    prepare_qat(model, policy, task.quant_config, calibration, quantizer=config.effective_quantizer,
                zero_point=config.zero_point)
    return model


def finetune_policy(task_or_spec: Task | TaskSpec | str | Path, policy: QuantPolicy,
                    config: FinetuneConfig | None = None, progress: bool = True,
                    desc: str = "finetune") -> FinetuneResult:
    """QAT of the task's pretrained float model with ``policy``; test accuracy before and after.

    The task's model is not modified (a copy is fine-tuned). Raises PolicyError (or
    UnknownNameError for a misspelt layer) when the policy does not fit the model, and
    DivergenceError when training diverges (non-finite loss, step or weight) or collapses
    to chance accuracy from above it.
    """
    from haq_rl.seeding import seed_everything
    from haq_rl.training import evaluate_accuracy, resolve_device

    config = config or FinetuneConfig()
    task = task_of(task_or_spec, config.device)
    policy = policy.validate(task.layer_names, task.quant_config.min_bits, task.quant_config.max_bits)
    device = resolve_device(config.device)
    started = time.perf_counter()
    seed_everything(config.seed)
    model = prepare_model(task, policy, config, device)
    test_split = test_loader(task)
    before = evaluate_accuracy(model, test_split, metric=task.metric)
    train_set = task.splits.search_train
    teacher = teacher_logits(task.model.to(device), train_set, device) if config.distill > 0 else None
    images = config.images_per_epoch(task.spec.finetune_epoch_images, len(train_set))
    losses = (train_qat(model, train_set, config, device, teacher=teacher, progress=progress, desc=desc,
                        epoch_images=images)
              if config.epochs > 0 else [])
    model.eval()
    after = evaluate_accuracy(model, test_split, metric=task.metric)
    _check_not_collapsed(task, desc, before, after)
    export = export_qat(model)
    wall = time.perf_counter() - started
    logger.info("%s: test accuracy %.2f%% -> %.2f%% in %.1f s", desc, before, after, wall)
    return FinetuneResult(model=model, accuracy=after, export=export, accuracy_before=before,
                          policy=policy, losses=losses, wall_time_s=wall)


def _check_not_collapsed(task: Task, desc: str, before: float, after: float) -> None:
    """DivergenceError when top-1 fell to chance from clearly above it (finite but broken training)."""
    from haq_rl.training import top1_accuracy

    if task.metric not in (None, top1_accuracy):
        return  # chance is defined for top-1 only
    classes = int(task.meta.get("num_classes") or 0)
    if classes < 2:
        return
    chance = 100.0 / classes
    margin = max(2.0, 0.5 * chance)  # a 1,000-image test split: chance +- a few points
    if after <= chance + margin < before:
        raise DivergenceError(f"{desc} collapsed to chance: test accuracy {before:.1f}% -> {after:.1f}% "
                              f"(chance {chance:.1f}%); lower the learning rate")
