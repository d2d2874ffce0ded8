"""Quantization-aware fine-tuning of one policy: the QAT loop, measured on the test split."""

from __future__ import annotations

import copy
import logging
import time
from pathlib import Path

import torch

from haq_rl.finetune.config import FinetuneConfig, FinetuneResult
from haq_rl.quant import QuantPolicy, export_qat, prepare_qat
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


def finetune_policy(task_or_spec: Task | TaskSpec | str | Path, policy: QuantPolicy,
                    config: FinetuneConfig | None = None, progress: bool = True,
                    desc: str = "finetune") -> FinetuneResult:
    """QAT of the task's pretrained float model with ``policy``; test accuracy before and after.

    The task's model is not modified (a copy is fine-tuned). Raises PolicyError (or
    UnknownNameError for a misspelt layer) when the policy does not fit the model.
    """
    from haq_rl.data import make_loader
    from haq_rl.seeding import seed_everything
    from haq_rl.training import evaluate_accuracy, resolve_device, train_epochs

    config = config or FinetuneConfig()
    task = task_of(task_or_spec, config.device)
    policy = policy.validate(task.layer_names, task.quant_config.min_bits, task.quant_config.max_bits)
    device = resolve_device(config.device)
    started = time.perf_counter()
    seed_everything(config.seed)
    model = copy.deepcopy(task.model).to(device)
    # Calibrate the activation clips on the float model exactly as the search did.
    prepare_qat(model, policy, task.quant_config, [x.to(device) for x in task.calibration_inputs()],
                learnable_clip=config.learnable_clip)
    test_split = test_loader(task)
    before = evaluate_accuracy(model, test_split, metric=task.metric)
    loader = make_loader(task.splits.search_train, batch_size=config.batch_size, shuffle=True,
                         seed=config.seed)
    losses = train_epochs(model, loader, epochs=config.epochs, lr=config.lr, device=device,
                          progress=progress, desc=desc)
    model.eval()
    after = evaluate_accuracy(model, test_split, metric=task.metric)
    export = export_qat(model)
    wall = time.perf_counter() - started
    logger.info("%s: test accuracy %.2f%% -> %.2f%% in %.1f s", desc, before, after, wall)
    return FinetuneResult(model=model, accuracy=after, export=export, accuracy_before=before,
                          policy=policy, losses=losses, wall_time_s=wall)
