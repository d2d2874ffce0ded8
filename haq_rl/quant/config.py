"""QuantConfig: how weights and activations are quantized (frozen, self-validating)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from haq_rl.errors import ConfigError

WEIGHT_GRANULARITIES = ("per_channel", "per_tensor")
ACT_CALIBRATIONS = ("max", "percentile", "mse", "kl")
WEIGHT_METHODS = ("linear", "kmeans")
#: Hard limits of the fake-quant kernels as used here (1 bit = binary weights).
ABS_MIN_BITS = 1
ABS_MAX_BITS = 16


@dataclass(frozen=True)
class QuantConfig:
    """Quantization settings shared by :class:`PolicyApplier` and QAT.

    Arguments:
        weight_granularity: ``"per_channel"`` (one scale per output channel) or ``"per_tensor"``.
        act_calibration: how an activation's clipping range is chosen from calibration
            statistics: ``"max"`` (observed max |x|), ``"percentile"`` (``percentile`` of |x|),
            ``"mse"`` (clip minimising the quantization MSE) or ``"kl"`` (TensorRT-style
            KL-divergence threshold, as HAQ used below 5 bits).
        calibration_batches: how many of the given calibration batches are used.
        percentile: percentile of |x| for ``act_calibration="percentile"`` (in (50, 100]).
        min_bits / max_bits: the allowed bit range of policies (1 means binary weights).
        weight_method: ``"linear"`` (uniform symmetric grid) or ``"kmeans"`` (2^w shared
            values per layer, for the model-size objective).
        kmeans_iters: Lloyd iterations of the k-means weight sharing.
    """

    weight_granularity: str = "per_channel"
    act_calibration: str = "mse"
    calibration_batches: int = 4
    percentile: float = 99.99
    min_bits: int = 2
    max_bits: int = 8
    weight_method: str = "linear"
    kmeans_iters: int = 20

    def __post_init__(self) -> None:
        _choice("weight_granularity", self.weight_granularity, WEIGHT_GRANULARITIES)
        _choice("act_calibration", self.act_calibration, ACT_CALIBRATIONS)
        _choice("weight_method", self.weight_method, WEIGHT_METHODS)
        _int_range("calibration_batches", self.calibration_batches, 1, 10_000)
        _int_range("min_bits", self.min_bits, ABS_MIN_BITS, ABS_MAX_BITS)
        _int_range("max_bits", self.max_bits, ABS_MIN_BITS, ABS_MAX_BITS)
        _int_range("kmeans_iters", self.kmeans_iters, 1, 1000)
        if self.min_bits > self.max_bits:
            raise ConfigError(
                f"QuantConfig: min_bits={self.min_bits} must be <= max_bits={self.max_bits}")
        if isinstance(self.percentile, bool) or not isinstance(self.percentile, (int, float)) \
                or not 50.0 < float(self.percentile) <= 100.0:
            raise ConfigError(
                f"QuantConfig: percentile={self.percentile!r} must be a number in (50, 100]")

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (for config.json)."""
        return asdict(self)


def _choice(field: str, value: object, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ConfigError(f"QuantConfig: {field}={value!r} must be one of {', '.join(allowed)}")


def _int_range(field: str, value: object, lo: int, hi: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise ConfigError(f"QuantConfig: {field}={value!r} must be an int in [{lo}, {hi}]")
