"""finetuned.pt: writing, reading and rebuilding the fine-tuned quantized model (weights_only)."""

from __future__ import annotations

import copy
import logging
from pathlib import Path
from typing import Any

from torch import nn

from haq_rl import __version__
from haq_rl.checkpoint_io import atomic_torch_save, read_torch_file
from haq_rl.errors import CheckpointError
from haq_rl.finetune.config import CHECKPOINT_FORMAT_VERSION, FinetuneConfig, FinetuneResult
from haq_rl.quant import quantizable_modules
from haq_rl.quant.fold import fold_batchnorm
from haq_rl.quant.qat import act_pre_hook, frozen_act_quantizer
from haq_rl.task.task import Task

logger = logging.getLogger(__name__)

def save_finetuned(path: str | Path, result: FinetuneResult, task: Task, config: FinetuneConfig,
                   **extra_meta: Any) -> Path:
    """Write a fine-tuned checkpoint that loads with ``torch.load(weights_only=True)``.

    Only tensors, numbers, strings, lists and dicts go in, so no pickled class is needed.
    """
    path = Path(path)
    assert result.policy is not None
    meta: dict[str, Any] = {
        # What load_checkpoint-style code needs to rebuild the float model.
        **{key: task.meta[key] for key in ("model", "num_classes", "in_channels", "input_size",
                                           "width_mult", "dataset") if key in task.meta},
        "env": task.spec.to_dict(),
        # How to turn pixels into this model's inputs (docs/preprocessing.md).
        "preprocessing": task.preprocessing(),
        "finetune": config.to_dict(),
        "accuracy": float(result.accuracy),
        "accuracy_before": float(result.accuracy_before),
        "accuracy_split": "test",
        "learnable_clip": bool(config.learnable_clip),
        "quantizer": config.effective_quantizer,
        # The model's structure: a folded model has no BatchNorm and conv biases.
        "fold_bn": bool(config.fold_bn),
        "haq_rl_version": __version__,
        **extra_meta,
    }
    state_dict = {k: v.detach().cpu().contiguous() for k, v in result.export["state_dict"].items()}
    payload = {
        "format_version": CHECKPOINT_FORMAT_VERSION,
        "state_dict": state_dict,
        "quant_params": result.export["quant"],
        "policy": result.policy.to_dict(),
        "meta": meta,
    }
    atomic_torch_save(payload, path)
    return path


def load_finetuned(path: str | Path) -> dict[str, Any]:
    """Read and check a finetuned.pt (``weights_only=True``); raises CheckpointError."""
    payload = read_torch_file(path, {"format_version", "state_dict", "quant_params", "policy", "meta"},
                              "haq-rl fine-tuned checkpoint")
    if payload["format_version"] != CHECKPOINT_FORMAT_VERSION:
        raise CheckpointError(f"{path} has format_version {payload['format_version']!r}; "
                              f"this haq-rl reads {CHECKPOINT_FORMAT_VERSION}")
    return payload


def float_structure(task: Task, payload: dict[str, Any], source: str = "checkpoint") -> nn.Module:
    """A plain (unquantized) copy of the task's model with the checkpoint's tensors loaded.

    The checkpoint's weights are the quantized values; a BN-folded checkpoint
    (``meta["fold_bn"]``) is loaded into a folded copy. Raises CheckpointError when the
    tensors do not fit the model.
    """
    model = copy.deepcopy(task.model).eval()
    if payload["meta"].get("fold_bn"):
        device = next(model.parameters()).device
        fold_batchnorm(model, task.calibration_inputs()[0].to(device))
    try:
        model.load_state_dict(payload["state_dict"], strict=True)
    except (RuntimeError, TypeError, AttributeError) as error:
        first_line = str(error).strip().splitlines()[0]
        raise CheckpointError(f"{source} does not fit model {task.spec.model!r}: {first_line}") from None
    return model


def load_quantized_model(task: Task, payload: dict[str, Any], source: str = "checkpoint") -> nn.Module:
    """The fine-tuned model of a checkpoint, ready for inference.

    Weights are the exported quantized values, loaded as they are (not re-quantized);
    every quantizable layer gets back its activation quantizer with the trained step
    (learned by LSQ, or an old checkpoint's calibrated / PACT clip) and zero point, so the
    forward is the one that was measured after fine-tuning.
    """
    model = float_structure(task, payload, source)
    quant = payload["quant_params"]
    for name, module in quantizable_modules(model):
        params = quant.get(name)
        if params is None:
            raise CheckpointError(f"{source} has no quantizer parameters for layer {name!r}")
        module.add_module("act_quant", frozen_act_quantizer(params))
        module.register_forward_pre_hook(act_pre_hook)
    return model.eval()
