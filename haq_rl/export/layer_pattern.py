"""The integer ONNX pattern of one quantized layer: the one definition the export and the measured table share.

``--runtime ort`` (``integer_form``) writes each quantized Conv/Gemm as::

    x (UINT8) -> DequantizeLinear -+
    weight levels -> DequantizeLinear (per channel) -+-> Conv / Gemm -> QuantizeLinear (UINT8) [-> Clip (UINT8)]
    INT32 bias -> DequantizeLinear (per channel) ----+

which onnxruntime fuses into QLinearConv / QGemm. The rules that decide the stored types live
here (``stored_levels``, ``integer_bias``, ``quantize_output``) and ``layer_model`` builds one layer
alone from them, so the table ``haq-rl profile --measure ort-cpu`` times (hardware/measured.py,
through the measured target's row in hardware/targets.py) is the pattern the export writes;
tests/test_export_layer_pattern.py checks that the two stay the same after onnxruntime's fusion.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import Any

import numpy as np

from haq_rl.errors import MissingDependencyError
from haq_rl.hardware.layer_spec import LayerSpec

#: Largest weight level after widening: 7 bits, so that a UINT8 x INT8 pair sum fits int16
#: even on x86 CPUs without VNNI (whose vpmaddubsw saturates).
WIDE_LEVEL = 63
#: The opset of a layer alone (INT32 bias DequantizeLinear, UINT8 Clip).
LAYER_OPSET = 21


def stored_levels(levels: np.ndarray) -> tuple[np.ndarray, int]:
    """How the portable integer form stores a layer's weight levels, and their zero point.

    Levels within ``+-WIDE_LEVEL`` (sub-8-bit grids, widened) stay INT8 with zero point 0; wider
    ones (an 8-bit grid) become UINT8 ``levels + 128`` with zero point 128: the same values, run
    by onnxruntime's U8U8 kernel, which cannot saturate without VNNI.
    """
    if np.abs(levels).max(initial=0) <= WIDE_LEVEL:
        return levels.astype(np.int8), 0
    return (levels.astype(np.int32) + 128).astype(np.uint8), 128


def integer_bias(bias: np.ndarray, input_scale: float, weight_scale: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A float bias as INT32 levels at scale ``input_scale * weight_scale`` (per output channel), as
    QLinearConv and QGemm need: rounding of at most half an accumulator step."""
    scale = (input_scale * weight_scale.astype(np.float64)).reshape(-1)
    if scale.size == 1:
        scale = np.full(bias.shape, scale[0])
    levels = np.clip(np.rint(bias / scale), -(2 ** 31), 2 ** 31 - 1).astype(np.int32)
    return levels, scale.astype(np.float32)


def quantize_output(source: str, scale: str, zero: str, limits: Sequence[str] | None, base: str) -> list[Any]:
    """QuantizeLinear of a layer's float output (UINT8 ``zero``), then, when ``limits`` names two UINT8
    bounds (a sub-8-bit grid or an activation bound), the integer Clip to them. The last node's
    output is the layer's integer output."""
    from onnx import helper

    nodes = [helper.make_node("QuantizeLinear", [source, scale, zero], [f"{base}_q"], name=f"{base}/quantize")]
    if limits is not None:
        nodes.append(helper.make_node("Clip", [f"{base}_q", *limits], [f"{base}_clamped"], name=f"{base}/clamp"))
    return nodes


def _require_onnx() -> Any:
    try:
        import onnx
        import onnxruntime  # noqa: F401  (timing needs it too: fail before building)
    except ImportError:
        raise MissingDependencyError("haq-rl profile --measure needs onnx and onnxruntime: "
                                     "pip install 'haq-rl[export]'") from None
    return onnx


def _padding(spec: LayerSpec) -> tuple[int, int]:
    """Symmetric padding that gives the spec's output size (torch's floor((in + 2p - k) / s) + 1)."""
    pads = []
    for size_in, size_out in ((spec.in_h, spec.out_h), (spec.in_w, spec.out_w)):
        needed = (size_out - 1) * spec.stride + spec.kernel - size_in
        pads.append(max(0, (needed + 1) // 2))
    return pads[0], pads[1]


def _serialized(onnx: Any, nodes: list[Any], name: str, inputs: list[Any], output_type: int,
                initializers: list[Any]) -> bytes:
    from onnx import helper

    graph = helper.make_graph(nodes, name, inputs, [helper.make_tensor_value_info(nodes[-1].output[0], output_type,
                                                                                  None)], initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", LAYER_OPSET)])
    model.ir_version = min(model.ir_version, 10)
    buffer = io.BytesIO()
    onnx.save(model, buffer)
    return buffer.getvalue()


def layer_model(spec: LayerSpec, batch: int, integer: bool, clamp: bool = False,
                wide: bool = False) -> tuple[bytes, np.ndarray]:
    """The ONNX model of one layer alone and an input for it (random weights: timing only).

    ``integer``: the export's integer pattern (above); otherwise the float Conv/Gemm. ``wide``: 8-bit
    weights (stored UINT8, as the portable export stores them); otherwise weights below 8 bits
    (INT8 levels within +-63). ``clamp``: a sub-8-bit activation's integer Clip after the output Q.
    """
    onnx = _require_onnx()
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    if spec.kind != "linear":
        weight_shape = [spec.out_channels, spec.in_channels // spec.groups, spec.kernel, spec.kernel]
        input_shape = [batch, spec.in_channels, spec.in_h, spec.in_w]
        pad_h, pad_w = _padding(spec)
        attributes: dict[str, Any] = {"strides": [spec.stride] * 2, "pads": [pad_h, pad_w, pad_h, pad_w],
                                      "group": spec.groups, "kernel_shape": [spec.kernel] * 2}
        op = "Conv"
    else:
        weight_shape = [spec.out_channels, spec.in_channels]
        # A Linear on tokens (in_h x in_w positions) multiplies every position's row.
        input_shape = [batch * max(1, spec.in_h * spec.in_w), spec.in_channels]
        attributes = {"transB": 1}
        op = "Gemm"
    weight = rng.standard_normal(weight_shape).astype(np.float32) * 0.05
    bias = rng.standard_normal(spec.out_channels).astype(np.float32) * 0.05
    if not integer:
        initializers = [numpy_helper.from_array(weight, "w"), numpy_helper.from_array(bias, "b")]
        nodes = [helper.make_node(op, ["x", "w", "b"], ["y"], **attributes)]
        x: np.ndarray = rng.standard_normal(input_shape).astype(np.float32)
        inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, input_shape)]
        return _serialized(onnx, nodes, spec.name, inputs, TensorProto.FLOAT, initializers), x
    peak = 127 if wide else WIDE_LEVEL
    w_scale = (np.abs(weight).reshape(len(weight), -1).max(axis=1) / peak).astype(np.float32)
    stored, zero = stored_levels(np.rint(weight / w_scale.reshape(-1, *([1] * (weight.ndim - 1)))))
    x_scale = 0.02
    bias_levels, bias_scale = integer_bias(bias, x_scale, w_scale)
    initializers = [
        numpy_helper.from_array(stored, "w_q"), numpy_helper.from_array(w_scale, "w_s"),
        numpy_helper.from_array(np.full(len(stored), zero, stored.dtype), "w_z"),
        numpy_helper.from_array(np.array(x_scale, np.float32), "x_s"),
        numpy_helper.from_array(np.array(128, np.uint8), "x_z"),
        numpy_helper.from_array(bias_levels, "b_q"), numpy_helper.from_array(bias_scale, "b_s"),
        numpy_helper.from_array(np.zeros(len(stored), np.int32), "b_z"),
        numpy_helper.from_array(np.array(0.05, np.float32), "y_s"),
        numpy_helper.from_array(np.array(0, np.uint8), "y_z"),
    ]
    if clamp:  # a sub-8-bit activation: the integer clamp to its 2^bits levels
        initializers += [numpy_helper.from_array(np.array(0, np.uint8), "lo"),
                         numpy_helper.from_array(np.array(15, np.uint8), "hi")]
    nodes = [
        helper.make_node("DequantizeLinear", ["x", "x_s", "x_z"], ["x_dq"]),
        helper.make_node("DequantizeLinear", ["w_q", "w_s", "w_z"], ["w_dq"], axis=0),
        helper.make_node("DequantizeLinear", ["b_q", "b_s", "b_z"], ["b_dq"], axis=0),
        helper.make_node(op, ["x_dq", "w_dq", "b_dq"], ["y_f"], **attributes),
        *quantize_output("y_f", "y_s", "y_z", ["lo", "hi"] if clamp else None, "y"),
    ]
    x = rng.integers(0, 256, input_shape, dtype=np.uint8)
    inputs = [helper.make_tensor_value_info("x", TensorProto.UINT8, input_shape)]
    return _serialized(onnx, nodes, spec.name, inputs, TensorProto.UINT8, initializers), x


def call_overhead_model(input_shape: Sequence[int], integer: bool) -> tuple[bytes, np.ndarray]:
    """An Identity session on a layer's input: what one ``session.run`` costs without the layer."""
    onnx = _require_onnx()
    from onnx import TensorProto, helper

    rng = np.random.default_rng(0)
    x_type = TensorProto.UINT8 if integer else TensorProto.FLOAT
    x = rng.integers(0, 256, list(input_shape), dtype=np.uint8) if integer \
        else rng.standard_normal(list(input_shape)).astype(np.float32)
    nodes = [helper.make_node("Identity", ["x"], ["y"])]
    return _serialized(onnx, nodes, "overhead", [helper.make_tensor_value_info("x", x_type, list(input_shape))],
                       x_type, []), x


def boundary_model(input_shape: Sequence[int], quantize: bool) -> tuple[bytes, np.ndarray]:
    """Where a float layer meets an INT8 one, alone: the QuantizeLinear (float -> UINT8) an INT8 layer
    after a float one pays on its input, or the per-channel DequantizeLinear (UINT8 -> float) a float
    layer after an INT8 one reads (``integer_form``: per channel, so onnxruntime leaves the float
    layer float), on a tensor of ``input_shape``. Returns the model and an input for it."""
    onnx = _require_onnx()
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    shape = list(input_shape)
    channels = shape[1] if len(shape) > 1 else 1
    if quantize:
        initializers = [numpy_helper.from_array(np.array(0.02, np.float32), "s"),
                        numpy_helper.from_array(np.array(128, np.uint8), "z")]
        nodes = [helper.make_node("QuantizeLinear", ["x", "s", "z"], ["y"])]
        x: np.ndarray = rng.standard_normal(shape).astype(np.float32)
        x_type, y_type = TensorProto.FLOAT, TensorProto.UINT8
    else:
        initializers = [numpy_helper.from_array(np.full(channels, 0.02, np.float32), "s"),
                        numpy_helper.from_array(np.full(channels, 128, np.uint8), "z")]
        nodes = [helper.make_node("DequantizeLinear", ["x", "s", "z"], ["y"], axis=1)]
        x = rng.integers(0, 256, shape, dtype=np.uint8)
        x_type, y_type = TensorProto.UINT8, TensorProto.FLOAT
    inputs = [helper.make_tensor_value_info("x", x_type, shape)]
    return _serialized(onnx, nodes, "boundary", inputs, y_type, initializers), x
