"""Timing one layer alone in onnxruntime on this CPU: medians, less the cost of calling onnxruntime at all."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from haq_rl.errors import MissingDependencyError
from haq_rl.hardware.layer_spec import LayerSpec

#: ``layer_model(spec, batch, integer, clamp, wide) -> (ONNX bytes, input)`` and
#: ``overhead_model(input_shape, integer) -> (ONNX bytes, input)``: a measured target's graphs.
LayerModel = Callable[[LayerSpec, int, bool, bool, bool], tuple[bytes, np.ndarray]]
OverheadModel = Callable[[Any, bool], tuple[bytes, np.ndarray]]

#: The least a layer costs in the table (ms): a timing at or below the call overhead is noise.
_FLOOR_MS = 1e-4


@dataclass(frozen=True)
class LayerTiming:
    """One layer's medians in ms: float, fused INT8 (weights below 8 bits), INT8 plus the sub-8-bit
    activation clamp, and fused with 8-bit weights (UINT8 in the portable form)."""

    float_ms: float
    int8_ms: float
    int8_clamped_ms: float
    int8_wide_ms: float


def require_onnxruntime() -> Any:
    try:
        import onnx  # noqa: F401  (the layer graphs are built with it)
        import onnxruntime
    except ImportError:
        raise MissingDependencyError("haq-rl profile --measure needs onnx and onnxruntime: "
                                     "pip install 'haq-rl[export]'") from None
    return onnxruntime


def median_ms(session: Any, feed: dict[str, np.ndarray], repeats: int, warmup: int) -> float:
    """Median wall time of ``session.run`` in ms after ``warmup`` runs."""
    for _ in range(warmup):
        session.run(None, feed)
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        session.run(None, feed)
        times.append(1000 * (time.perf_counter() - started))
    return statistics.median(times)


def pinned_session(onnxruntime: Any, data: bytes) -> Any:
    """An onnxruntime CPU session on one thread: every timed graph alike, whatever else the machine runs."""
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = 1  # pinned: a table must not depend on what else the machine runs
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    return onnxruntime.InferenceSession(data, options, providers=["CPUExecutionProvider"])


def time_layer(spec: LayerSpec, batch: int, repeats: int, warmup: int, layer_model: LayerModel,
               overhead_model: OverheadModel) -> LayerTiming:
    """Time one layer alone: float, fused INT8, fused INT8 plus the clamp, fused with 8-bit weights,
    each less the call overhead."""
    onnxruntime = require_onnxruntime()
    overhead: dict[bool, float] = {}
    results = []
    for integer, clamp, wide in ((False, False, False), (True, False, False), (True, True, False),
                                 (True, False, True)):
        data, x = layer_model(spec, batch, integer, clamp, wide)
        if integer not in overhead:  # once per input type (float, UINT8), on this layer's input shape
            identity, same = overhead_model(x.shape, integer)
            overhead[integer] = median_ms(pinned_session(onnxruntime, identity), {"x": same}, repeats, warmup)
        spent = median_ms(pinned_session(onnxruntime, data), {"x": x}, repeats, warmup) - overhead[integer]
        results.append(max(spent, _FLOOR_MS))
    return LayerTiming(*results)


def time_boundary(input_shape: Any, repeats: int, warmup: int, boundary_model: Callable[[Any, bool], Any],
                  overhead_model: OverheadModel) -> tuple[float, float]:
    """Time the float/INT8 boundaries on one tensor shape alone: (QuantizeLinear ms, DequantizeLinear ms),
    each less the call overhead on its input type."""
    onnxruntime = require_onnxruntime()
    results = []
    for quantize in (True, False):
        data, x = boundary_model(input_shape, quantize)
        identity, same = overhead_model(x.shape, not quantize)
        overhead = median_ms(pinned_session(onnxruntime, identity), {"x": same}, repeats, warmup)
        results.append(max(median_ms(pinned_session(onnxruntime, data), {"x": x}, repeats, warmup) - overhead, _FLOOR_MS))
    return results[0], results[1]
