"""haq_rl.quant: fake quantizers, calibration, policies, fast policy application, QAT, k-means.

torch only (never gymnasium or stable-baselines3). The hot path of the search is
:class:`PolicyApplier`: ``apply(policy)`` swaps cached quantized weights and activation
quantizer parameters into the model in place; ``restore()`` brings the exact float back.
"""

from .applier import PolicyApplier
from .calibration import InputStats, clip_range, collect_input_stats
from .config import ACT_CALIBRATIONS, WEIGHT_GRANULARITIES, WEIGHT_METHODS, QuantConfig
from .kmeans import KMeansState, kmeans_1d, kmeans_project_, kmeans_quantize_, kmeans_weight
from .layers import quantizable_modules
from .policy import FORMAT_VERSION, QuantPolicy
from .qat import ActFakeQuant, export_qat, prepare_qat, remove_qat
from .quantizers import (
    ActQuantParams,
    act_qrange,
    binarize_weight,
    fake_quantize_act,
    fake_quantize_weight,
    weight_qrange,
    weight_scales,
)

__all__ = [
    "ACT_CALIBRATIONS",
    "FORMAT_VERSION",
    "WEIGHT_GRANULARITIES",
    "WEIGHT_METHODS",
    "ActFakeQuant",
    "ActQuantParams",
    "InputStats",
    "KMeansState",
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
    "prepare_qat",
    "quantizable_modules",
    "remove_qat",
    "weight_qrange",
    "weight_scales",
]
