"""haq_rl.quant: fake quantizers, calibration, policies, fast policy application, QAT, k-means.

torch only (never gymnasium or stable-baselines3). The hot path of the search is
:class:`PolicyApplier`: ``apply(policy)`` swaps cached quantized weights and activation
quantizer parameters into the model in place; ``restore()`` brings the exact float back.

Names load on first use: ``haq_rl.quant.config`` alone is torch-free, so the task specs
share its name lists without loading torch.
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "ACT_CALIBRATIONS": "haq_rl.quant.config",
    "ActFakeQuant": "haq_rl.quant.qat",
    "ActQuantParams": "haq_rl.quant.quantizers",
    "FORMAT_VERSION": "haq_rl.quant.policy",
    "InputStats": "haq_rl.quant.calibration",
    "KMeansState": "haq_rl.quant.kmeans",
    "LSQActQuantizer": "haq_rl.quant.lsq",
    "LSQWeightQuantizer": "haq_rl.quant.lsq",
    "PolicyApplier": "haq_rl.quant.applier",
    "QuantConfig": "haq_rl.quant.config",
    "QuantPolicy": "haq_rl.quant.policy",
    "WEIGHT_GRANULARITIES": "haq_rl.quant.config",
    "WEIGHT_METHODS": "haq_rl.quant.config",
    "act_qrange": "haq_rl.quant.quantizers",
    "binarize_weight": "haq_rl.quant.quantizers",
    "clip_range": "haq_rl.quant.calibration",
    "collect_input_stats": "haq_rl.quant.calibration",
    "export_qat": "haq_rl.quant.qat",
    "fake_quantize_act": "haq_rl.quant.quantizers",
    "fake_quantize_weight": "haq_rl.quant.quantizers",
    "kmeans_1d": "haq_rl.quant.kmeans",
    "kmeans_project_": "haq_rl.quant.kmeans",
    "kmeans_quantize_": "haq_rl.quant.kmeans",
    "kmeans_weight": "haq_rl.quant.kmeans",
    "lsq_fake_quantize": "haq_rl.quant.lsq",
    "prepare_qat": "haq_rl.quant.qat",
    "quantizable_modules": "haq_rl.quant.layers",
    "remove_qat": "haq_rl.quant.qat",
    "split_decay_parameters": "haq_rl.quant.lsq",
    "step_parameters": "haq_rl.quant.lsq",
    "weight_qrange": "haq_rl.quant.quantizers",
    "weight_scales": "haq_rl.quant.quantizers",
}

__all__ = [
    "ACT_CALIBRATIONS",
    "FORMAT_VERSION",
    "WEIGHT_GRANULARITIES",
    "WEIGHT_METHODS",
    "ActFakeQuant",
    "ActQuantParams",
    "InputStats",
    "KMeansState",
    "LSQActQuantizer",
    "LSQWeightQuantizer",
    "PolicyApplier",
    "QuantConfig",
    "QuantPolicy",
    "act_qrange",
    "binarize_weight",
    "clip_range",
    "collect_input_stats",
    "export_qat",
    "fake_quantize_act",
    "fake_quantize_weight",
    "kmeans_1d",
    "kmeans_project_",
    "kmeans_quantize_",
    "kmeans_weight",
    "lsq_fake_quantize",
    "prepare_qat",
    "quantizable_modules",
    "remove_qat",
    "split_decay_parameters",
    "step_parameters",
    "weight_qrange",
    "weight_scales",
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'haq_rl.quant' has no attribute {name!r}")
