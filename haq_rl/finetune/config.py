"""The fine-tune settings (:class:`FinetuneConfig`) and one fine-tuned result (:class:`FinetuneResult`)."""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from typing import Any

from torch import nn

from haq_rl.errors import ConfigError
from haq_rl.quant import QuantPolicy

logger = logging.getLogger(__name__)

CHECKPOINT_FORMAT_VERSION = 1
METRICS_FORMAT_VERSION = 1


@dataclass(frozen=True)
class FinetuneConfig:
    """The fine-tune budget, the same for the searched policy and every baseline.

    The defaults are measured on the default env (MobileNetV2 on mnist5k, see the
    docs/user_guide.md): one epoch over the 3500 ``search_train`` images at lr 5e-3 recovers most of
    the accuracy that 4-bit quantization loses, and the whole comparison (4-5 fine-tunes)
    takes a few minutes on two CPU cores.

    Arguments:
        epochs: passes over ``search_train`` (>= 1).
        lr: peak SGD learning rate of the cosine schedule (> 0).
        batch_size: training batch size (>= 2: BatchNorm needs two samples).
        seed: drives the batch order and everything else random in the fine-tune.
        device: cpu, cuda, cuda:N or auto.
        compare: also fine-tune the uniform baselines (False: only the searched policy).
        learnable_clip: train the activation clips PACT-style instead of keeping the
            calibrated ones.
    """

    epochs: int = 1
    lr: float = 5e-3
    batch_size: int = 64
    seed: int = 0
    device: str = "cpu"
    compare: bool = True
    learnable_clip: bool = False

    def __post_init__(self) -> None:
        if isinstance(self.epochs, bool) or not isinstance(self.epochs, int) or self.epochs < 1:
            raise ConfigError(f"epochs={self.epochs!r} must be an integer >= 1")
        if isinstance(self.lr, bool) or not isinstance(self.lr, int | float) or not 0 < self.lr < math.inf:
            raise ConfigError(f"lr={self.lr!r} must be a finite number > 0")
        if isinstance(self.batch_size, bool) or not isinstance(self.batch_size, int) or self.batch_size < 2:
            raise ConfigError(f"batch_size={self.batch_size!r} must be an integer >= 2")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise ConfigError(f"seed={self.seed!r} must be an integer >= 0")
        device = str(self.device)
        if device not in ("cpu", "cuda", "auto") and not device.startswith("cuda:"):
            raise ConfigError(f"device={self.device!r} must be cpu, cuda, cuda:N or auto")

    def to_dict(self) -> dict[str, Any]:
        """The settings as a JSON-ready dict (metrics.json's ``finetune`` entry)."""
        return {"epochs": self.epochs, "lr": float(self.lr), "batch_size": self.batch_size,
                "seed": self.seed, "device": str(self.device), "compare": self.compare,
                "learnable_clip": self.learnable_clip}


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
