"""The fine-tune settings (:class:`FinetuneConfig`) and one fine-tuned result (:class:`FinetuneResult`)."""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from typing import Any

from torch import nn

from haq_rl.errors import ConfigError, check_device, check_integer, check_number, check_seed
from haq_rl.quant import QuantPolicy
from haq_rl.task.sources import MODEL_STARTS, STARTS, StartSettings, check_start

logger = logging.getLogger(__name__)

CHECKPOINT_FORMAT_VERSION = 1
METRICS_FORMAT_VERSION = 1


#: QAT quantizers (haq_rl.quant.qat.QAT_QUANTIZERS; repeated here so the config stays torch-light).
QUANTIZERS = ("lsq", "max_abs", "pact")
OPTIMIZERS = ("adam", "sgd")
#: Where a fine-tune starts (STARTS, the start table of haq_rl.task.sources): ``float`` (the
#: task's float model, quantized per policy), ``supernet`` (the task's supernet: its shared
#: weights and the policy's learned steps, BatchNorm re-estimated for the policy) or ``auto``
#: (the start of the task's reward source: supernet for supernet or predictor, else float).


@dataclass(frozen=True)
class FinetuneConfig:
    """The fine-tune recipe, the same for the searched policy and every baseline.

    The defaults are the recipe chosen by measurement in bench/bench_finetune.py (see
    docs/quantization.md): learned step sizes (LSQ, LSQ+ zero points on signed inputs),
    Adam with a cosine schedule, one epoch over the
    ``search_train`` images. :meth:`legacy` is the recipe before it (max-abs weights,
    calibrated clips, cross-entropy, SGD at lr 5e-3).

    Arguments:
        epochs: passes over ``search_train`` (>= 0; 0 measures the starting model as it
            is: post-training quantization from ``float``, "retraining-free" from ``supernet``).
        lr: peak learning rate of the weights (cosine schedule to zero, > 0).
        batch_size: training batch size (>= 2: BatchNorm needs two samples).
        seed: drives the batch order and everything else random in the fine-tune.
        device: cpu, cuda, cuda:N or auto.
        compare: also fine-tune the uniform baselines (False: only the searched policy).
        learnable_clip: legacy switch for ``quantizer="pact"``.
        quantizer: ``lsq`` (learned steps), ``max_abs`` (max-abs weight scales recomputed
            every step, fixed calibrated activation clips) or ``pact`` (max-abs weights,
            PACT-trained clips).
        zero_point: LSQ+ learned zero point on activations that can be negative (lsq only).
        optimizer: ``adam`` or ``sgd`` (Nesterov momentum 0.9).
        weight_decay: decay of the >= 2-d weights (never of biases, norms or steps).
        step_lr_scale: the steps' and zero points' learning rate, as a multiple of ``lr``.
        warmup: fraction of the steps during which only the quantizer steps (and zero
            points) train, at their full rate, while the weights' rate ramps up linearly
            from zero (in [0, 0.5]).
        distill: weight of the distillation loss in [0, 1]: ``(1 - distill) * CE(labels) +
            distill * T^2 * KL(float || quantized)`` at ``temperature`` T (Hinton et al.
            2015); 0 (the default: it did not win in the benchmark) is cross-entropy only.
        temperature: distillation temperature T (> 0).
        fold_bn: fold BatchNorm into the conv weights before quantizing (as integer-only
            hardware and the ONNX export compute); the folded model trains without BN.
        start: one of :data:`STARTS`, the model the fine-tune starts from.
        epoch_images: training images per epoch, drawn afresh from ``search_train`` each
            epoch (0: all of it; None: the task's ``finetune_epoch_images``). On a large
            training split this keeps a fine-tune's cost fixed.
    """

    epochs: int = 1
    lr: float = 3e-4
    batch_size: int = 64
    seed: int = 0
    device: str = "cpu"
    compare: bool = True
    learnable_clip: bool = False
    quantizer: str = "lsq"
    zero_point: bool = True
    optimizer: str = "adam"
    weight_decay: float = 0.0
    step_lr_scale: float = 1.0
    warmup: float = 0.05
    distill: float = 0.0
    temperature: float = 2.0
    fold_bn: bool = False
    start: str = "auto"
    epoch_images: int | None = None

    @classmethod
    def legacy(cls, **changes: Any) -> FinetuneConfig:
        """The recipe before learned steps (haq-rl <= 69ec7a2): max-abs, CE, SGD lr 5e-3."""
        base: dict[str, Any] = {"lr": 5e-3, "quantizer": "max_abs", "optimizer": "sgd",
                                "weight_decay": 4e-5, "warmup": 0.05, "distill": 0.0, "step_lr_scale": 1.0}
        return cls(**{**base, **changes})

    @property
    def effective_quantizer(self) -> str:
        """``pact`` when the legacy ``learnable_clip`` is set, else ``quantizer``."""
        return "pact" if self.learnable_clip else self.quantizer

    @property
    def start_settings(self) -> StartSettings:
        """What a start reads of this recipe (:func:`haq_rl.finetune.policy_model.model_at_policy`)."""
        return StartSettings(quantizer=self.effective_quantizer, zero_point=self.zero_point, fold_bn=self.fold_bn)

    def __post_init__(self) -> None:
        check_integer("epochs", self.epochs, 0, "0: no training")
        if self.epoch_images is not None:
            check_integer("epoch_images", self.epoch_images, 0, "0: every training image; None: the task's")
        if self.start not in STARTS:
            raise ConfigError(f"start={self.start!r} must be one of {', '.join(STARTS)}")
        if self.start in MODEL_STARTS:  # auto is checked once the task's reward source is known
            check_start(MODEL_STARTS[self.start], self.start_settings)
        check_number("lr", self.lr, 0.0, math.inf, low_open=True)
        check_integer("batch_size", self.batch_size, 2)
        check_seed("seed", self.seed)
        check_device(self.device)
        if self.quantizer not in QUANTIZERS:
            raise ConfigError(f"quantizer={self.quantizer!r} must be one of {', '.join(QUANTIZERS)}")
        if self.optimizer not in OPTIMIZERS:
            raise ConfigError(f"optimizer={self.optimizer!r} must be one of {', '.join(OPTIMIZERS)}")
        check_number("weight_decay", self.weight_decay, 0.0, 1.0)
        check_number("step_lr_scale", self.step_lr_scale, 0.0, 1e4, low_open=True)
        check_number("warmup", self.warmup, 0.0, 0.5)
        check_number("distill", self.distill, 0.0, 1.0)
        check_number("temperature", self.temperature, 0.0, 100.0, low_open=True)
        for name in ("compare", "learnable_clip", "zero_point", "fold_bn"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(f"{name}={getattr(self, name)!r} must be true or false")

    def to_dict(self) -> dict[str, Any]:
        """The settings as a JSON-ready dict (metrics.json's ``finetune`` entry)."""
        return {"epochs": self.epochs, "lr": float(self.lr), "batch_size": self.batch_size,
                "seed": self.seed, "device": str(self.device), "compare": self.compare,
                "learnable_clip": self.learnable_clip, "quantizer": self.effective_quantizer,
                "zero_point": self.zero_point, "optimizer": self.optimizer,
                "weight_decay": float(self.weight_decay), "step_lr_scale": float(self.step_lr_scale),
                "warmup": float(self.warmup), "distill": float(self.distill),
                "temperature": float(self.temperature), "fold_bn": self.fold_bn, "start": self.start,
                "epoch_images": self.epoch_images}

    def images_per_epoch(self, spec_default: int, available: int) -> int:
        """The training images one epoch sees: ``epoch_images`` (or the task's default), at most ``available``."""
        wanted = spec_default if self.epoch_images is None else self.epoch_images
        return available if wanted == 0 else min(wanted, available)



@dataclass
class FinetuneResult:
    """One fine-tuned policy.

    ``model`` is the fake-quantized model (still prepared for QAT, eval mode);
    ``accuracy`` and ``accuracy_before`` are test-split accuracies (percent) after and
    before fine-tuning; ``export`` is :func:`haq_rl.quant.export_qat`'s output.
    """

    model: nn.Module
    accuracy: float
    export: dict[str, Any]
    accuracy_before: float = float("nan")
    policy: QuantPolicy | None = None
    losses: list[float] = field(default_factory=list)
    wall_time_s: float = 0.0
