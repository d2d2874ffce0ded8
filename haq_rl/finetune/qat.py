"""Quantization-aware fine-tuning of one policy: the QAT loop, measured on the test split."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import torch
from torch import nn

from haq_rl.errors import DivergenceError
from haq_rl.finetune.config import FinetuneConfig, FinetuneResult
from haq_rl.finetune.policy_model import model_at_policy, start_of
from haq_rl.finetune.train import teacher_logits, train_qat
from haq_rl.quant import QuantPolicy, export_qat
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
    """The name of the start ``config`` asks for: ``auto`` is the task's reward source's."""
    return start_of(task, config.start).name


def prepare_model(task: Task, policy: QuantPolicy, config: FinetuneConfig, device: torch.device) -> nn.Module:
    """The model a fine-tune of ``policy`` starts from, fake-quantized per ``policy``
    (:func:`~haq_rl.finetune.policy_model.model_at_policy`: from ``float``, the search's
    calibration; from ``supernet``, exactly what the supernet reward scored)."""
    return model_at_policy(task, policy, start=config.start, settings=config.start_settings, device=device)


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
