"""Rewrite the reference QDQ graph into the pattern onnxruntime fuses into integer kernels.

The reference export (``onnx_qdq``) puts Q/DQ on each quantized layer's *input* only, with
BatchNorm in float after the conv: the exact simulation of the searched bits, which
onnxruntime runs as dequantize + float conv (slower than the float model). Its QDQ
fusions (QLinearConv, QGemm, QLinearAdd) need ``DQ -> op -> Q``: a quantized output too.
This module turns the reference graph into that form:

1. **BatchNorm folds into the conv's per-channel weight scale**: ``w' = levels * s * g``
   with ``g = gamma / sqrt(var + eps)`` is still on the searched grid (the scale absorbs
   ``|g|``; a negative ``g`` flips the symmetric integer levels), so the fold is exact.
2. **Each quantized Conv/Gemm gets a Q on its output.** Its Relu/Clip and order-preserving data movement (MaxPool, Flatten,
   Reshape) commute with a monotone quantizer, so they move behind it: the activation
   becomes an integer clamp and the data movement runs on INT8.
   - When every reader is a quantized layer's input quantizer with one grid, the Q *is*
     that quantizer (sub-8-bit grids as an INT8 ``Clip`` to their 2^bits levels): exact.
   - Otherwise (a residual Add, an average pool) the tensor gets an 8-bit grid calibrated
     on its observed range: the one place the integer form rounds where PyTorch does not.
     Where a reader quantizer re-rounds it, the grid refines the reader's (step / odd k),
     so that reader stays exact. Residual Adds run in float on dequantized inputs: the
     skip path keeps float precision (QLinearAdd would round it twice more, for no
     measurable speed-up at these sizes).
3. **Sub-8-bit weights are widened** (levels * m at scale / m: the same values) so the
   INT32 bias step, input_scale * weight_scale, stays small against an output step.
4. **Biases become INT32** with scale ``input_scale * weight_scale``, as QLinearConv and
   QGemm need (rounding of at most half an accumulator step).

A Gemm that writes the graph output keeps a float output (onnxruntime's QGemm has one).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

logger = logging.getLogger(__name__)

#: Ops that commute with an elementwise non-decreasing map (a quantizer): moved behind the Q.
_DATA_MOVEMENT = frozenset({"MaxPool", "Flatten", "Reshape", "Squeeze", "Unsqueeze", "Transpose", "Identity"})
#: The kernels onnxruntime fuses QDQ into (CPU provider, extended optimizations).
INTEGER_KERNELS = ("QLinearConv", "QGemm", "MatMulInteger", "MatMulIntegerToFloat", "QLinearMatMul",
                   "QLinearAdd", "MatMulNBits", "ConvInteger", "DynamicQuantizeMatMul")


#: The instruction sets the integer form can be written for (``to_integer_form(isa=...)``).
#: - ``portable``: right on every x86 CPU. x86 kernels for UINT8 activations x INT8 weights
#:   (U8S8) without VNNI multiply with vpmaddubsw, which adds pairs of products into 16 bits
#:   with saturation: 255 * 127 * 2 overflows, 255 * 63 * 2 does not (onnxruntime's
#:   quantization docs name the same limit and offer 7-bit weights or U8U8 instead). So a
#:   layer whose weight levels exceed 63 stores them as UINT8 with zero point 128 (the same
#:   values), and onnxruntime runs its U8U8 kernel, which widens to 16 bits before multiplying.
#: - ``vnni``: every weight INT8 (U8S8). VNNI's vpdpbusd accumulates in 32 bits, so this is
#:   exact on CPUs with AVX512-VNNI or AVX-VNNI, and loses points on the others.
ISAS = ("portable", "vnni")


@dataclass(frozen=True)
class Grid:
    """A UINT8 quantization grid: ``x ~ (q - zero) * scale`` with q clamped to ``low..high``.

    UINT8, not INT8: onnxruntime's x86 Conv fusion takes UINT8 activations with INT8
    weights (U8S8) only. The reference form's INT8 zero point z is the UINT8 z + 128.
    """

    scale: float
    zero: int
    low: int = 0
    high: int = 255

    def level(self, value: float) -> int:
        """The integer a float bound maps to (round half to even, as QuantizeLinear does)."""
        return int(np.rint(value / self.scale)) + self.zero

    def clamped(self, low: float, high: float) -> Grid:
        """This grid with the float bounds ``low..high`` (an activation) folded into its levels."""
        q_low = self.low if low == -math.inf else max(self.low, self.level(low))
        q_high = self.high if high == math.inf else min(self.high, self.level(high))
        return Grid(self.scale, self.zero, q_low, max(q_low, q_high))


@dataclass
class IntegerFormReport:
    """What the rewrite did: exact output quantizers, calibrated 8-bit ones, folded BatchNorms."""

    folded_batchnorms: int = 0
    exact_outputs: int = 0
    calibrated_outputs: list[str] = field(default_factory=list)
    #: layers whose weights are stored as UINT8 (zero point 128) for the ``portable`` ISA
    unsigned_weights: list[str] = field(default_factory=list)


class _Graph:
    """Name lookups over an ONNX graph that the passes keep up to date by rebuilding."""

    def __init__(self, graph: Any) -> None:
        from onnx import numpy_helper

        self.graph = graph
        # Our own list of standalone nodes: edits to a protobuf repeated field invalidate
        # references into it. ``commit`` writes the list back.
        self.nodes: list[Any] = []
        for node in graph.node:
            copy = type(node)()
            copy.CopyFrom(node)
            self.nodes.append(copy)
        self.constants: dict[str, np.ndarray] = {init.name: numpy_helper.to_array(init) for init in graph.initializer}
        for node in self.nodes:
            if node.op_type == "Constant" and node.attribute and node.attribute[0].name == "value":
                self.constants[node.output[0]] = numpy_helper.to_array(node.attribute[0].t)
            elif node.op_type == "Identity" and node.input[0] in self.constants:  # torch's dedup of equal tensors
                self.constants[node.output[0]] = self.constants[node.input[0]]
        self.refresh()

    def refresh(self) -> None:
        self.producer = {out: node for node in self.nodes for out in node.output}
        self.consumers: dict[str, list[Any]] = {}
        for node in self.nodes:
            for name in node.input:
                self.consumers.setdefault(name, []).append(node)
        self.outputs = {output.name for output in self.graph.output}

    def commit(self) -> None:
        del self.graph.node[:]
        self.graph.node.extend(self.nodes)

    def add_initializer(self, name: str, value: np.ndarray) -> str:
        from onnx import numpy_helper

        self.graph.initializer.append(numpy_helper.from_array(value, name))
        self.constants[name] = value
        return name

    def scalar(self, name: str) -> float | None:
        value = self.constants.get(name)
        return None if value is None or value.size != 1 else float(value.reshape(-1)[0])


def to_integer_form(model: Any, quantized_layers: Iterable[str], calibration: Sequence[np.ndarray],
                    isa: str = "portable") -> IntegerFormReport:
    """Rewrite ``model`` (the reference QDQ export, INT8 weight containers) in place for ``isa`` (``ISAS``)."""
    if isa not in ISAS:
        raise ValueError(f"isa {isa!r} must be one of {', '.join(ISAS)}")
    graph = _Graph(model.graph)
    layers = set(quantized_layers)
    report = IntegerFormReport()
    report.folded_batchnorms = _fold_batchnorms(graph, layers)
    for layer in sorted(layers):
        _widen_levels(graph, layer)
        if isa == "portable" and _unsigned_weight(graph, layer):
            report.unsigned_weights.append(layer)
    graph.refresh()
    producers = [node for node in graph.nodes if _weight_layer(graph, node) in layers]
    producer_ids = {id(node) for node in producers}
    graph.commit()
    ranges = _observed_ranges(model, [node.output[0] for node in graph.nodes
                                      if id(node) in producer_ids], calibration)
    for node in list(graph.nodes):
        if id(node) in producer_ids:
            _quantize_output(graph, node, ranges, report)
            graph.refresh()
    _integer_biases(graph, producers)
    _drop_dead(graph)
    _unsigned_inputs(graph)
    graph.commit()
    logger.info("integer form: %d BatchNorms folded, %d exact output quantizers, %d calibrated 8-bit (%s)",
                report.folded_batchnorms, report.exact_outputs, len(report.calibrated_outputs),
                ", ".join(report.calibrated_outputs[:4]))
    return report


def _weight_layer(graph: _Graph, node: Any) -> str | None:
    """The layer whose dequantized integer weight ``node`` (a Conv or Gemm) reads, else None."""
    if node.op_type not in ("Conv", "Gemm") or len(node.input) < 2:
        return None
    reader = graph.producer.get(node.input[1])
    if reader is None or reader.op_type != "DequantizeLinear" or not reader.name.endswith("/weight_dequantize"):
        return None
    return reader.name.removesuffix("/weight_dequantize")


def _is_dequantized(graph: _Graph, name: str) -> bool:
    node = graph.producer.get(name)
    return node is not None and node.op_type == "DequantizeLinear"


def _fold_batchnorms(graph: _Graph, layers: set[str]) -> int:
    """Fold each BatchNormalization that alone reads a quantized conv into its weight scale and bias."""
    folded = 0
    for conv in list(graph.nodes):
        layer = _weight_layer(graph, conv)
        readers = graph.consumers.get(conv.output[0], [])
        if layer not in layers or conv.op_type != "Conv" or len(readers) != 1 \
                or readers[0].op_type != "BatchNormalization" or conv.output[0] in graph.outputs:
            continue
        bn = readers[0]
        gamma, beta, mean, var = (graph.constants[name].astype(np.float64) for name in bn.input[1:5])
        eps = next((a.f for a in bn.attribute if a.name == "epsilon"), 1e-5)
        gain = gamma / np.sqrt(var + eps)
        levels_name, scale_name = f"{layer}.weight_q", f"{layer}.weight_scale"
        levels = graph.constants[levels_name].astype(np.int32)
        scale = graph.constants[scale_name].astype(np.float64)
        # Levels are symmetric (-q..q), so a negative gain flips them and the scale stays positive.
        sign = np.where(gain < 0, -1, 1).reshape(-1, *([1] * (levels.ndim - 1)))
        bias = graph.constants[conv.input[2]].astype(np.float64) if len(conv.input) > 2 else np.zeros(len(gain))
        _replace_initializer(graph, levels_name, (levels * sign).astype(np.int8))
        _replace_initializer(graph, scale_name, np.maximum(scale * np.abs(gain), 1e-12).astype(np.float32))
        bias_name = graph.add_initializer(f"{layer}.folded_bias", (beta + (bias - mean) * gain).astype(np.float32))
        del conv.input[2:]
        conv.input.append(bias_name)
        conv.output[0] = bn.output[0]
        _remove(graph, bn)
        folded += 1
    return folded


#: Largest weight level after widening: 7 bits, so that a UINT8 x INT8 pair sum fits int16
#: even on x86 CPUs without VNNI (whose vpmaddubsw saturates).
_WIDE_LEVEL = 63


def _widen_levels(graph: _Graph, layer: str) -> None:
    """Store sub-8-bit weights as ``levels * m`` at scale ``scale / m``: the same values.

    QLinearConv's INT32 bias has step ``input_scale * weight_scale``; at 2-4 bits that step
    is a sizeable part of an output step, and rounding the bias to it moved outputs across
    rounding midpoints (measured: 0.7 % of one ResNet-8 layer's 3-bit outputs). A finer
    weight scale makes the bias step ``m`` times finer at no cost.
    """
    levels_name, scale_name = f"{layer}.weight_q", f"{layer}.weight_scale"
    levels = graph.constants[levels_name].astype(np.int32)
    scale = graph.constants[scale_name].astype(np.float64)
    peak = np.abs(levels.reshape(len(levels), -1)).max(axis=1)
    factor = np.maximum(1, _WIDE_LEVEL // np.maximum(peak, 1))
    if (factor == 1).all():
        return
    if scale.size == 1:  # per-tensor scale: one factor for all channels
        factor = np.full(len(levels), factor.min())
        scale = scale.reshape(-1)[0] / factor[:1]
    else:
        scale = scale / factor
    shape = (-1, *([1] * (levels.ndim - 1)))
    _replace_initializer(graph, levels_name, (levels * factor.reshape(shape)).astype(np.int8))
    _replace_initializer(graph, scale_name, scale.astype(np.float32).reshape(graph.constants[scale_name].shape))


def _unsigned_weight(graph: _Graph, layer: str) -> bool:
    """Store a layer's weights as UINT8 ``levels + 128`` with zero point 128 when a level exceeds
    ``_WIDE_LEVEL`` (an 8-bit grid): the same values, run by the U8U8 kernel that cannot saturate."""
    from onnx import TensorProto, helper

    levels = graph.constants[f"{layer}.weight_q"].astype(np.int32)
    if np.abs(levels).max(initial=0) <= _WIDE_LEVEL:
        return False
    _replace_initializer(graph, f"{layer}.weight_q", (levels + 128).astype(np.uint8))
    zero_name = f"{layer}.weight_zero"
    zero = graph.constants.get(zero_name)
    count = 1 if zero is None else int(zero.size)
    shape = [] if zero is None or zero.ndim == 0 else list(zero.shape)
    for index, init in enumerate(graph.graph.initializer):
        if init.name == zero_name:
            graph.graph.initializer[index].CopyFrom(helper.make_tensor(zero_name, TensorProto.UINT8, shape, [128] * count))
    graph.constants[zero_name] = np.full(shape, 128, np.uint8)
    return True


def _replace_initializer(graph: _Graph, name: str, value: np.ndarray) -> None:
    from onnx import numpy_helper

    for index, init in enumerate(graph.graph.initializer):
        if init.name == name:
            graph.graph.initializer[index].CopyFrom(numpy_helper.from_array(value, name))
    graph.constants[name] = value


def _observed_ranges(model: Any, names: list[str], calibration: Sequence[np.ndarray]) -> dict[str, tuple[float, float]]:
    """min and max of each named tensor over the calibration batches, run in onnxruntime."""
    import onnx
    import onnxruntime

    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    known = {output.name for output in probe.graph.output}
    probe.graph.output.extend(onnx.helper.make_empty_tensor_value_info(name) for name in names if name not in known)
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = 1
    options.log_severity_level = 3  # the probe still holds the folded BatchNorms' unused initializers
    session = onnxruntime.InferenceSession(probe.SerializeToString(), options, providers=["CPUExecutionProvider"])
    wanted = [output.name for output in session.get_outputs()]
    low = {name: math.inf for name in names}
    high = {name: -math.inf for name in names}
    for batch in calibration:
        for name, value in zip(wanted, session.run(wanted, {"input": batch}), strict=True):
            if name in low:
                low[name], high[name] = min(low[name], float(value.min())), max(high[name], float(value.max()))
    return {name: (low[name], high[name]) for name in names}


def _input_grid(graph: _Graph, clip: Any) -> Grid | None:
    """The grid of a layer's input quantizer (``Clip -> QuantizeLinear -> DequantizeLinear``) starting at ``clip``."""
    if clip.op_type != "Clip" or not clip.name.endswith("/input_clip"):
        return None
    quantize = graph.consumers[clip.output[0]][0]
    scale, zero = graph.scalar(quantize.input[1]), graph.scalar(quantize.input[2])
    low, high = graph.scalar(clip.input[1]), graph.scalar(clip.input[2])
    if None in (scale, zero, low, high):
        return None
    grid = Grid(float(scale), int(zero) + 128)  # type: ignore[arg-type]
    return grid.clamped(float(low), float(high))  # type: ignore[arg-type]


def _quantize_output(graph: _Graph, producer: Any, ranges: dict[str, tuple[float, float]],
                     report: IntegerFormReport) -> None:
    """Put a Q right after ``producer``, move its activation and data movement behind it, DQ at the end.

    A graph output (the logits) stays float: onnxruntime's QGemm has a float output.
    """
    from onnx import TensorProto, helper

    start = producer.output[0]
    if start in graph.outputs:
        return
    chain, low, high = _output_chain(graph, start)
    end = chain[-1].output[0] if chain else start
    readers = graph.consumers.get(end, [])
    grids = {_input_grid(graph, reader) for reader in readers}
    exact = bool(readers) and end not in graph.outputs and len(grids) == 1 and None not in grids
    if exact:
        grid = next(iter(grids)).clamped(low, high)  # type: ignore[union-attr]
        report.exact_outputs += 1
    else:
        observed = ranges.get(start)
        if observed is None:
            return
        reader_grid = next((grid for grid in grids if grid is not None), None)
        grid = _calibrated_grid(max(observed[0], low), min(observed[1], high), reader_grid).clamped(low, high)
        report.calibrated_outputs.append(start)
    base = f"{start}/int"
    scale = graph.add_initializer(f"{base}_scale", np.array(grid.scale, np.float32))
    zero = f"{base}_zero"
    graph.graph.initializer.append(helper.make_tensor(zero, TensorProto.UINT8, [], [grid.zero]))
    nodes = [helper.make_node("QuantizeLinear", [start, scale, zero], [f"{base}_q"], name=f"{base}/quantize")]
    current = f"{base}_q"
    if (grid.low, grid.high) != (0, 255):  # a sub-8-bit grid or an activation bound: integer clamp
        limits = [f"{base}_low", f"{base}_high"]
        graph.graph.initializer.append(helper.make_tensor(limits[0], TensorProto.UINT8, [], [grid.low]))
        graph.graph.initializer.append(helper.make_tensor(limits[1], TensorProto.UINT8, [], [grid.high]))
        nodes.append(helper.make_node("Clip", [current, *limits], [f"{base}_clamped"], name=f"{base}/clamp"))
        current = f"{base}_clamped"
    for node in chain:
        if node.op_type in _DATA_MOVEMENT:  # runs on the integers
            moved = helper.make_node(node.op_type, [current, *node.input[1:]], [f"{node.output[0]}/int"],
                                     name=f"{node.name}/int")
            moved.attribute.extend(node.attribute)
            nodes.append(moved)
            current = moved.output[0]
    dequantized = f"{base}_dq"
    nodes.append(helper.make_node("DequantizeLinear", [current, scale, zero], [dequantized], name=f"{base}/dequantize"))
    for reader in readers:
        if exact:  # the reader's own Clip -> Q -> DQ is now this one: its layer reads our DQ
            quantize = graph.consumers[reader.output[0]][0]
            dequantize = graph.consumers[quantize.output[0]][0]
            for user in graph.consumers.get(dequantize.output[0], []):
                _rename_input(user, dequantize.output[0], dequantized)
        else:
            _rename_input(reader, end, dequantized)
    for node in chain:
        _remove(graph, node)
    position = _index(graph, producer) + 1
    for offset, node in enumerate(nodes):
        graph.nodes.insert(position + offset, node)


def _index(graph: _Graph, node: Any) -> int:
    return next(index for index, candidate in enumerate(graph.nodes) if candidate is node)


def _remove(graph: _Graph, node: Any) -> None:
    del graph.nodes[_index(graph, node)]


def _output_chain(graph: _Graph, start: str) -> tuple[list[Any], float, float]:
    """The single-reader Relu/Clip/data-movement nodes after ``start``, and the activation bounds they impose."""
    chain: list[Any] = []
    low, high = -math.inf, math.inf
    end = start
    while end not in graph.outputs and len(graph.consumers.get(end, [])) == 1:
        node = graph.consumers[end][0]
        if node.name.endswith("/input_clip") or node.input[0] != end:
            break  # a layer's input quantizer is the reader, not part of this output
        if node.op_type == "Relu":
            low = max(low, 0.0)
        elif node.op_type == "Clip":
            node_low = graph.scalar(node.input[1]) if len(node.input) > 1 and node.input[1] else -math.inf
            node_high = graph.scalar(node.input[2]) if len(node.input) > 2 and node.input[2] else math.inf
            if node_low is None or node_high is None:
                break  # bounds computed at run time: leave the Clip in float
            low, high = max(low, node_low), min(high, node_high)
        elif node.op_type not in _DATA_MOVEMENT or len(node.output) != 1:
            break
        chain.append(node)
        end = node.output[0]
    return chain, low, high


def _calibrated_grid(low: float, high: float, reader: Grid | None) -> Grid:
    """An 8-bit grid covering ``low..high``; where it can, a refinement of a reader's grid.

    The reader re-rounds the tensor to its own (coarser) grid. With a step ``reader.scale / k``
    for an odd k, every midpoint of the reader's grid is a midpoint of ours, so rounding
    twice gives what rounding once would: that reader stays exact.
    """
    low, high = min(low, 0.0), max(high, 0.0)  # zero must be a level (zero padding, ReLU)
    span = max(high - low, 1e-8)
    if reader is not None:
        k = int(255 * reader.scale / span)
        k -= 1 - k % 2  # the largest odd k that still covers the span
        if k >= 1:
            scale = reader.scale / k
            return Grid(scale, min(255, max(0, int(np.ceil(-low / scale)))))
    if low >= 0:  # non-negative: all 256 levels above zero
        return Grid(span / 255, 0)
    scale = max(-low, high) / 127
    return Grid(scale, 128)


def _rename_input(node: Any, old: str, new: str) -> None:
    for index, name in enumerate(node.input):
        if name == old:
            node.input[index] = new


def _integer_biases(graph: _Graph, producers: list[Any]) -> None:
    """Float biases of fused Conv/Gemm -> INT32 at scale input_scale * weight_scale, through a DQ."""
    from onnx import TensorProto, helper

    graph.refresh()
    for node in producers:
        if len(node.input) < 3 or not node.input[2] or not _is_dequantized(graph, node.input[0]):
            continue
        bias = graph.constants.get(node.input[2])
        input_scale = graph.scalar(graph.producer[node.input[0]].input[1])
        weight_scale = graph.constants.get(graph.producer[node.input[1]].input[1])
        if bias is None or input_scale is None or weight_scale is None or bias.ndim != 1:
            continue
        scale = (input_scale * weight_scale.astype(np.float64)).reshape(-1)
        if scale.size == 1:
            scale = np.full(bias.shape, scale[0])
        name = f"{node.input[2]}/int32"
        levels = np.clip(np.rint(bias / scale), -(2 ** 31), 2 ** 31 - 1).astype(np.int32)
        graph.add_initializer(f"{name}_q", levels)
        graph.add_initializer(f"{name}_scale", scale.astype(np.float32))
        graph.graph.initializer.append(helper.make_tensor(f"{name}_zero", TensorProto.INT32, [len(scale)],
                                                          [0] * len(scale)))
        dequantize = helper.make_node("DequantizeLinear", [f"{name}_q", f"{name}_scale", f"{name}_zero"],
                                      [f"{name}_dq"], axis=0, name=f"{name}/dequantize")
        graph.nodes.insert(_index(graph, node), dequantize)
        node.input[2] = f"{name}_dq"


def _unsigned_inputs(graph: _Graph) -> None:
    """The reference's remaining input quantizers (INT8 zero point z) as UINT8 (z + 128): the same grid."""
    from onnx import TensorProto, helper

    for index, init in enumerate(graph.graph.initializer):
        if init.name.endswith(".input_zero") and init.data_type == TensorProto.INT8:
            zero = int(graph.constants[init.name].reshape(-1)[0]) + 128
            graph.graph.initializer[index].CopyFrom(helper.make_tensor(init.name, TensorProto.UINT8, [], [zero]))


def live_nodes(nodes: Sequence[Any], outputs: Iterable[str]) -> list[Any]:
    """``nodes`` without those whose outputs nobody reads (the graph's ``outputs`` count as
    read), repeated until none is left to drop: a node only dead ones read is dead too."""
    graph_outputs = set(outputs)
    nodes = list(nodes)
    while True:
        read = {name for node in nodes for name in node.input} | graph_outputs
        live = [node for node in nodes if any(name in read for name in node.output)]
        if len(live) == len(nodes):
            return nodes
        nodes = live


def _drop_dead(graph: _Graph) -> None:
    """Remove nodes nobody reads (the replaced quantizers) and initializers nobody uses."""
    nodes = live_nodes(graph.nodes, (output.name for output in graph.graph.output))
    graph.nodes = nodes
    used = {name for node in nodes for name in node.input}
    kept = [init for init in graph.graph.initializer if init.name in used]
    del graph.graph.initializer[:]
    graph.graph.initializer.extend(kept)


def fused_kernels(data: bytes, path: str) -> dict[str, int]:
    """Count the ops of onnxruntime's optimized graph (extended level, CPU), written to ``path``."""
    import onnx
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
    options.optimized_model_filepath = path
    options.intra_op_num_threads = 1
    options.log_severity_level = 3
    onnxruntime.InferenceSession(data, options, providers=["CPUExecutionProvider"])
    counts: dict[str, int] = {}
    for node in onnx.load(path).graph.node:
        counts[node.op_type] = counts.get(node.op_type, 0) + 1
    return counts
