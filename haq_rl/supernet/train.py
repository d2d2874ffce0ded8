"""Training a task's bit-width supernet once, and finding it again in the cache.

:func:`train_supernet` is the one entry: it returns the cached supernet of the task when
there is a valid one, resumes an interrupted training from its checkpoint, or trains from
the task's float model. The steps are numbered and every random draw is a function of
``(seed, step)`` (batch order per epoch, configurations per step), so a resumed training
computes the same steps an uninterrupted one would.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from haq_rl.errors import CheckpointError, DivergenceError
from haq_rl.quant.calibration import collect_input_stats
from haq_rl.quant.layers import quantizable_modules
from haq_rl.quant.lsq import split_decay_parameters
from haq_rl.quant.outputs import logits_of
from haq_rl.quant.switchable import bit_choices
from haq_rl.supernet.config import SupernetConfig
from haq_rl.supernet.model import BitSupernet
from haq_rl.supernet.store import (
    entry_path,
    partial_path,
    read_entry,
    read_partial,
    save_entry,
    save_partial,
    supernet_identity,
)
from haq_rl.task.budget import pinned_layers
from haq_rl.training import distillation_loss, lr_multiplier, teacher_logits

logger = logging.getLogger(__name__)


@dataclass
class TrainedSupernet:
    """A task's supernet with where it came from.

    ``path``: its file; ``identity``: what it was trained for; ``history``: mean loss per
    epoch and training seconds; ``trained_now``: False when it came from the cache.
    """

    supernet: BitSupernet
    path: Path
    identity: dict[str, Any]
    history: dict[str, Any] = field(default_factory=dict)
    trained_now: bool = False


def build_supernet(task: Any, calibrated: bool = True) -> BitSupernet:
    """An untrained supernet of the task: a copy of its float model, every width's steps
    initialised from the search's calibration (max-abs weights, calibrated clips).

    ``calibrated=False`` starts the activation steps from max-abs clips instead, which skips
    the calibration's histogram pass (about 9 s of a 14 s build of the default model): for
    a supernet whose trained state is loaded next, which overwrites every step.
    """
    spec = task.spec
    model = copy.deepcopy(task.model).to(task.device).eval()
    layers = dict(quantizable_modules(model))
    calibration = [x.to(task.device) for x in task.calibration_inputs()]
    stats = collect_input_stats(model, layers, calibration, histograms=calibrated)
    config = task.quant_config if calibrated else dataclasses.replace(task.quant_config, act_calibration="max")
    pinned = pinned_layers(len(task.layers), spec.pin_first_last)
    w_choices, a_choices = bit_choices(len(task.layers), pinned, spec.min_bits, spec.max_bits, spec.weight_only)
    return BitSupernet(model, w_choices, a_choices, stats, config)


def identity_of(task: Any, supernet: BitSupernet, config: SupernetConfig) -> dict[str, Any]:
    return supernet_identity(task, supernet.w_choices, supernet.a_choices, config.identity())


def train_supernet(task: Any, config: SupernetConfig | None = None, *, progress: bool = True,
                   force: bool = False, path: str | Path | None = None) -> TrainedSupernet:
    """The task's trained supernet: from ``path``, from the cache, or trained now.

    ``path`` names a supernet file to use (refused with CheckpointError when it was trained
    for another task: other layers, bit range or float weights). Otherwise the cache entry
    of this task and ``config`` is used when its checksum holds; a corrupt one is retrained
    with a warning. ``force`` retrains even over a valid entry. Training holds the entry's
    lock, so two processes train it once; it checkpoints every ``config.checkpoint_every``
    steps and resumes from the last checkpoint after a kill.
    """
    from haq_rl.cache import cache_lock

    config = config or SupernetConfig()
    # Uncalibrated: enough to name the entry and to load a trained state into; a supernet
    # trained here is rebuilt from the calibrated clips first.
    supernet = build_supernet(task, calibrated=False)
    identity = identity_of(task, supernet, config)
    if path is not None:
        entry = read_entry(Path(path), identity)
        _load_into(supernet, entry["state_dict"], Path(path))
        return TrainedSupernet(supernet, Path(path), identity, entry["history"])
    target = entry_path(identity)
    if not force:
        cached = _valid_entry(target, identity, supernet)
        if cached is not None:
            logger.info("supernet from the cache: %s", target)
            return TrainedSupernet(supernet, target, identity, cached["history"])
    with cache_lock(target.with_name(target.name + ".lock"), f"training the supernet of {task.spec.model}"):
        cached = None if force else _valid_entry(target, identity, supernet)
        if cached is not None:  # the process we waited for trained it
            return TrainedSupernet(supernet, target, identity, cached["history"])
        supernet = build_supernet(task)
        history = _train(task, supernet, config, identity, partial_path(target), progress)
        save_entry(target, identity, supernet.state_dict(), history)
        partial_path(target).unlink(missing_ok=True)
    logger.info("supernet trained in %.0f s: %s", history["seconds"], target)
    return TrainedSupernet(supernet, target, identity, history, trained_now=True)


def _valid_entry(entry: Path, identity: dict[str, Any], supernet: BitSupernet) -> dict[str, Any] | None:
    """The cache entry, loaded into ``supernet``; None (a warning, then a retraining) when it
    is missing, incomplete or damaged: the cache is never trusted."""
    if not entry.is_file():
        return None
    before = copy.deepcopy(supernet.state_dict())
    try:
        cached = read_entry(entry, identity, cached=True)
        _load_into(supernet, cached["state_dict"], entry)
        return cached
    except CheckpointError as error:
        supernet.load_state_dict(before)  # a half-loaded entry must not be trained on
        logger.warning("%s; training it again", error)
        return None


def _load_into(supernet: BitSupernet, state_dict: dict[str, Any], source: Path) -> None:
    try:
        supernet.load_state_dict(state_dict)
    except (RuntimeError, KeyError, TypeError, ValueError) as error:
        raise CheckpointError(f"supernet {source} does not fit this task's supernet: "
                              f"{str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__}"
                              ) from None


@torch.enable_grad()  # callers may hold torch.no_grad() (the fine-tune's hand-off does)
def _train(task: Any, supernet: BitSupernet, config: SupernetConfig, identity: dict[str, Any],
           checkpoint: Path, progress: bool) -> dict[str, Any]:
    """The sandwich-rule training loop, resumable from ``checkpoint``; returns the history."""
    device = task.device
    threads = torch.get_num_threads()
    if config.threads:
        torch.set_num_threads(config.threads)
    model = supernet.model
    inputs, targets = task.splits.search_train.tensors[:2]
    teacher = teacher_logits(task.model.to(device), task.splits.search_train, device)
    per_epoch = math.ceil(len(targets) / config.batch_size)
    total = config.epochs * per_epoch
    warmup = int(config.warmup * total)
    optimizer, kinds = _optimizer(model, config)
    state = read_partial(checkpoint, identity, total)
    start, seconds, losses = 0, 0.0, []
    if state is not None:
        supernet.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        start, seconds, losses = int(state["step"]), float(state["seconds"]), list(state["losses"])
        logger.warning("resuming the supernet training at step %d/%d (%s)", start, total, checkpoint)
    has_conv = any(isinstance(m, nn.Conv2d) for m in model.modules())
    if has_conv:  # depthwise convolutions are ~3x faster channels-last on CPU (see training.py)
        model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    bar = tqdm(total=total, initial=start, desc=f"training the supernet of {task.spec.model}",
               disable=not progress, unit="step", leave=False)
    model.train()
    began = time.perf_counter()
    try:
        for step in range(start, total):
            epoch, index = divmod(step, per_epoch)
            order = torch.randperm(len(targets), generator=torch.Generator().manual_seed(config.seed * 1000 + epoch))
            rows = order[index * config.batch_size:(index + 1) * config.batch_size]
            if len(rows) < 2:
                continue  # BatchNorm cannot train on a single sample
            batch = inputs[rows].to(device)
            if has_conv and batch.dim() == 4:
                batch = batch.contiguous(memory_format=torch.channels_last)
            for group, kind in zip(optimizer.param_groups, kinds, strict=True):
                group["lr"] = config.lr * lr_multiplier(step, total, warmup, kind)
            loss = _sandwich_step(supernet, batch, targets[rows].to(device), teacher[rows].to(device), config, step)
            losses.append(loss)
            optimizer.step()
            bar.update(1)
            bar.set_postfix(epoch=epoch + 1, loss=f"{loss:.3f}")
            if (step + 1) % config.checkpoint_every == 0 and step + 1 < total:
                save_partial(checkpoint, {"identity": json.dumps(identity, sort_keys=True),
                                          "model": supernet.state_dict(), "optimizer": optimizer.state_dict(),
                                          "step": step + 1, "losses": losses,
                                          "seconds": seconds + time.perf_counter() - began})
    finally:
        bar.close()
        supernet.restore()
        model.eval()
        if has_conv:
            model.to(memory_format=torch.contiguous_format)  # type: ignore[call-overload]
        torch.set_num_threads(threads)
    epoch_losses = [float(np.mean(losses[e * per_epoch:(e + 1) * per_epoch])) for e in range(config.epochs)]
    return {"epoch_losses": epoch_losses, "steps": total, "seconds": seconds + time.perf_counter() - began}


def _sandwich_step(supernet: BitSupernet, inputs: torch.Tensor, targets: torch.Tensor, teacher: torch.Tensor,
                   config: SupernetConfig, step: int) -> float:
    """Gradients of the largest, the smallest and ``random_paths`` sampled configurations
    on one batch (summed); returns their mean loss. The optimizer step is the caller's."""
    generator = torch.Generator().manual_seed(config.seed * 1_000_003 + step)
    paths = [supernet.largest(), supernet.smallest()] + [supernet.sample(generator)
                                                         for _ in range(config.random_paths)]
    model = supernet.model
    for param in model.parameters():
        param.grad = None
    total = 0.0
    for path, (w_bits, a_bits) in enumerate(paths):
        supernet.set_bits(w_bits, a_bits)
        with torch.random.fork_rng(devices=[]):  # dropout draws too are a function of (seed, step)
            torch.manual_seed(config.seed * 1_000_003 + step * 16 + path)
            logits = logits_of(model(inputs))
        loss = distillation_loss(logits, teacher, targets, config.distill, config.temperature)
        value = float(loss.detach())
        if not math.isfinite(value):
            raise DivergenceError(f"supernet training diverged at step {step} (loss {value}); "
                                  f"lower lr={config.lr:g}")
        (loss / len(paths)).backward()
        total += value
    return total / len(paths)


def _optimizer(model: nn.Module, config: SupernetConfig) -> tuple[torch.optim.Optimizer, list[str]]:
    """Adam over weights and steps; steps and zero points are never decayed (LSQ)."""
    decay, no_decay, steps = split_decay_parameters(model)
    groups = [{"params": params, "kind": kind}
              for params, kind in ((decay, "weights"), (no_decay, "weights"), (steps, "steps")) if params]
    optimizer = torch.optim.Adam(groups, lr=config.lr)
    return optimizer, [str(g["kind"]) for g in groups]
