"""The QAT training loop: optimizer groups, step warm-up, distillation, divergence checks.

One epoch is a pass over ``search_train``. The loss is cross-entropy on the labels mixed
with knowledge distillation from the float model (Hinton et al., 2015; used for low-bit
QAT by Apprentice, Mishra & Marr, ICLR 2018, and by LSQ itself):
``(1 - distill) * CE + distill * T^2 * KL(softmax(teacher / T) || softmax(student / T))``.
The teacher is the float model the policy was applied to, in eval mode and without
augmentation, so its logits are the same in every epoch: they are computed once (one
no-grad forward over the split) instead of once per step.

Parameter groups (:func:`haq_rl.quant.lsq.split_decay_parameters`): weights with decay;
biases, norms and PACT clips without; LSQ steps and zero points without decay at
``step_lr_scale`` times the rate. During the warm-up fraction the steps train at their
full rate while the weights' rate ramps up from zero, so the steps first settle on the
weights the search scored. Then everything follows a cosine to zero.
"""

from __future__ import annotations

import logging
import math
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, RandomSampler, TensorDataset
from tqdm.auto import tqdm

from haq_rl.errors import DivergenceError
from haq_rl.finetune.config import FinetuneConfig
from haq_rl.quant.lsq import split_decay_parameters
from haq_rl.quant.outputs import logits_of
from haq_rl.training import distillation_loss, lr_multiplier, teacher_logits

__all__ = ["distillation_loss", "teacher_logits", "train_qat", "non_finite_layer"]

logger = logging.getLogger(__name__)


def _optimizer(model: nn.Module, config: FinetuneConfig) -> tuple[torch.optim.Optimizer, list[float]]:
    decay, no_decay, steps = split_decay_parameters(model)
    groups: list[dict[str, Any]] = [
        {"params": decay, "weight_decay": config.weight_decay, "kind": "weights"},
        {"params": no_decay, "weight_decay": 0.0, "kind": "weights"},
        {"params": steps, "weight_decay": 0.0, "kind": "steps"},
    ]
    groups = [g for g in groups if g["params"]]
    scales = [config.step_lr_scale if g["kind"] == "steps" else 1.0 for g in groups]
    optimizer: torch.optim.Optimizer
    if config.optimizer == "adam":
        optimizer = torch.optim.Adam(groups, lr=config.lr)
    else:
        optimizer = torch.optim.SGD(groups, lr=config.lr, momentum=0.9, nesterov=True)
    return optimizer, scales


def non_finite_layer(model: nn.Module) -> str | None:
    """Name of the first module holding a non-finite parameter ("step size of X" or "weights of X")."""
    for name, param in model.named_parameters():
        if not bool(torch.isfinite(param.detach()).all()):
            layer = name.split(".parametrizations.")[0].split(".act_quant.")[0]
            what = "step size" if name.endswith(("step", "zero_point", "alpha")) else "weights"
            return f"{what} of layer {layer!r} ({name})"
    return None


def train_qat(model: nn.Module, dataset: TensorDataset, config: FinetuneConfig, device: torch.device, *,
              teacher: torch.Tensor | None = None, progress: bool = True, desc: str = "finetune",
              epoch_images: int = 0) -> list[float]:
    """Train the prepared ``model`` in place; returns the mean loss of each epoch.

    ``teacher`` holds the float model's logits for every sample of ``dataset`` (needed when
    ``config.distill > 0``). Raises DivergenceError, naming the first layer whose weights
    or step went non-finite, as soon as the loss is not finite. ``epoch_images`` > 0 makes
    an epoch that many images, drawn without replacement afresh each epoch (seeded).
    """
    from haq_rl.data import make_loader

    if config.distill > 0 and teacher is None:
        raise ValueError("distillation needs the teacher's logits")
    tensors = (*dataset.tensors[:2], teacher) if teacher is not None else dataset.tensors[:2]
    data = TensorDataset(*tensors)
    loader: DataLoader
    if 0 < epoch_images < len(data):
        sampler = RandomSampler(data, num_samples=epoch_images,
                                generator=torch.Generator().manual_seed(config.seed))
        loader = DataLoader(data, batch_size=config.batch_size, sampler=sampler, num_workers=0)
    else:
        loader = make_loader(data, batch_size=config.batch_size, shuffle=True, seed=config.seed)
    has_conv = any(isinstance(m, nn.Conv2d) for m in model.modules())
    model.to(device)
    if has_conv:  # depthwise convolutions are ~3x faster channels-last on CPU (see training.py)
        model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    optimizer, scales = _optimizer(model, config)
    kinds = [g["kind"] for g in optimizer.param_groups]
    total = max(1, config.epochs * len(loader))
    warmup = int(config.warmup * total)
    model.train()
    losses: list[float] = []
    step = 0
    bar = tqdm(total=total, desc=desc, disable=not progress, leave=False, unit="step")
    try:
        for epoch in range(config.epochs):
            running, seen = 0.0, 0
            for batch in loader:
                for group, scale, kind in zip(optimizer.param_groups, scales, kinds, strict=True):
                    group["lr"] = config.lr * scale * lr_multiplier(step, total, warmup, kind)
                step += 1
                bar.update(1)
                inputs, targets = batch[0], batch[1]
                if len(targets) < 2:
                    continue  # BatchNorm cannot train on a single sample
                inputs, targets = inputs.to(device), targets.to(device)
                if has_conv and inputs.dim() == 4:
                    inputs = inputs.contiguous(memory_format=torch.channels_last)
                student = logits_of(model(inputs))
                soft = batch[2].to(device) if teacher is not None else student.detach()
                loss = distillation_loss(student, soft, targets, config.distill, config.temperature)
                value = float(loss.detach())
                if not math.isfinite(value):
                    culprit = non_finite_layer(model) or "no parameter is non-finite yet (the loss itself overflowed)"
                    raise DivergenceError(f"{desc} diverged at step {step}/{total} (loss {value}): {culprit}; "
                                          f"lower lr={config.lr:g} or step_lr_scale={config.step_lr_scale:g}")
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                running += value * len(targets)
                seen += len(targets)
                bar.set_postfix(epoch=epoch + 1, loss=f"{running / max(1, seen):.3f}")
            broken = non_finite_layer(model)
            if broken is not None:
                raise DivergenceError(f"{desc} diverged in epoch {epoch + 1}: {broken}; lower lr={config.lr:g}")
            losses.append(running / max(1, seen))
            logger.info("%s epoch %d/%d: loss %.4f", desc, epoch + 1, config.epochs, losses[-1])
    finally:
        bar.close()
        if has_conv:
            model.to(memory_format=torch.contiguous_format)  # type: ignore[call-overload]
    return losses
