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

from haq_rl.export.integer_weights import (
    fold_batchnorms,
    integer_biases,
    unsigned_inputs,
    unsigned_weight,
    weight_layer,
    widen_levels,
)
from haq_rl.export.layer_pattern import quantize_output
from haq_rl.export.onnx_graph import Graph, drop_dead, node_index, remove_node, rename_input
from haq_rl.export.runtimes import RuntimeForm
from haq_rl.hardware.cpu import has_vnni, instruction_set

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


def to_integer_form(model: Any, quantized_layers: Iterable[str], calibration: Sequence[np.ndarray],
                    isa: str = "portable") -> IntegerFormReport:
    """Rewrite ``model`` (the reference QDQ export, INT8 weight containers) in place for ``isa`` (``ISAS``)."""
    if isa not in ISAS:
        raise ValueError(f"isa {isa!r} must be one of {', '.join(ISAS)}")
    graph = Graph(model.graph)
    layers = set(quantized_layers)
    report = IntegerFormReport()
    report.folded_batchnorms = fold_batchnorms(graph, layers)
    for layer in sorted(layers):
        widen_levels(graph, layer)
        if isa == "portable" and unsigned_weight(graph, layer):
            report.unsigned_weights.append(layer)
    graph.refresh()
    producers = [node for node in graph.nodes if weight_layer(graph, node) in layers]
    producer_ids = {id(node) for node in producers}
    graph.commit()
    ranges = _observed_ranges(model, [node.output[0] for node in graph.nodes
                                      if id(node) in producer_ids], calibration)
    for node in list(graph.nodes):
        if id(node) in producer_ids:
            _quantize_output(graph, node, ranges, report)
            graph.refresh()
    integer_biases(graph, producers)
    drop_dead(graph)
    unsigned_inputs(graph)
    graph.commit()
    _float_layer_inputs_per_channel(model, graph)
    logger.info("integer form: %d BatchNorms folded, %d exact output quantizers, %d calibrated 8-bit (%s)",
                report.folded_batchnorms, report.exact_outputs, len(report.calibrated_outputs),
                ", ".join(report.calibrated_outputs[:4]))
    return report


def _float_layer_inputs_per_channel(model: Any, graph: Graph) -> None:
    """Give each float Conv/Gemm (a layer the policy keeps float) that reads a dequantized tensor its own
    per-channel DequantizeLinear: every channel on the same grid, so the same values.

    onnxruntime's WeightBiasQuantization (a basic-level optimization since 1.20) quantizes the float
    weight of any Conv/Gemm whose input comes from a DequantizeLinear with a per-tensor scale to
    per-tensor INT8: the float layer would silently run as an integer kernel. It skips a per-axis scale.
    """
    import onnx
    from onnx import helper, numpy_helper

    floats = [node for node in graph.nodes if node.op_type in ("Conv", "Gemm") and len(node.input) > 1
              and node.input[1] in graph.constants and graph.constants[node.input[1]].dtype == np.float32
              and graph.producer.get(node.input[0]) is not None
              and graph.producer[node.input[0]].op_type == "DequantizeLinear"]
    if not floats:
        return
    shapes = {info.name: info.type.tensor_type.shape
              for info in onnx.shape_inference.infer_shapes(model).graph.value_info}
    initializers = {init.name: numpy_helper.to_array(init) for init in model.graph.initializer}
    for node in floats:
        dequantize = graph.producer[node.input[0]]
        shape = shapes.get(node.input[0])
        channels = shape.dim[1].dim_value if shape is not None and len(shape.dim) > 1 else 0
        scale, zero = (initializers[name] if name in initializers else None for name in dequantize.input[1:3])
        if channels < 2 or scale is None or zero is None or scale.size != 1:
            logger.warning("float layer %s reads a per-tensor DequantizeLinear: onnxruntime may quantize its "
                           "weights", node.name)
            continue
        base = f"{node.input[0]}/per_channel"
        graph.add_initializer(f"{base}_scale", np.full(channels, scale.reshape(-1)[0], scale.dtype))
        graph.add_initializer(f"{base}_zero", np.full(channels, zero.reshape(-1)[0], zero.dtype))
        per_channel = helper.make_node("DequantizeLinear", [dequantize.input[0], f"{base}_scale", f"{base}_zero"],
                                       [f"{base}_dq"], axis=1, name=f"{base}/dequantize")
        graph.nodes.insert(node_index(graph, node), per_channel)
        rename_input(node, node.input[0], f"{base}_dq")
    graph.refresh()
    drop_dead(graph)
    graph.commit()


def ort_form(model: Any, layers: list[str], task: Any, isa: str) -> RuntimeForm:
    """The ``ort`` runtime's handler: the integer form for ``isa``, its grids calibrated on the task's images."""
    report = to_integer_form(model, layers, [batch.cpu().numpy() for batch in task.calibration_inputs()], isa=isa)
    return RuntimeForm(calibrated_outputs=report.calibrated_outputs, unsigned_weights=report.unsigned_weights,
                       isa_note=isa_explanation(isa, len(report.unsigned_weights)))


def isa_explanation(isa: str, unsigned_layers: int) -> str:
    """One sentence: which CPUs the integer form is exact on, and why (for metadata and the CLI)."""
    here = instruction_set()
    if isa == "vnni":
        warning = "" if has_vnni() else " (this CPU has no VNNI: its U8S8 kernels saturate on 8-bit weights)"
        return (f"every weight INT8 (U8S8 kernels): exact on x86 CPUs with AVX512-VNNI or AVX-VNNI only{warning}; "
                f"verified on {here}")
    return (f"exact on every x86 CPU: {unsigned_layers} layers with 8-bit weights stored as UINT8 (U8U8 kernels, no "
            f"16-bit saturation without VNNI), narrower weights as INT8 within +-63; verified on {here}")


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


def _input_grid(graph: Graph, clip: Any) -> Grid | None:
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


def _quantize_output(graph: Graph, producer: Any, ranges: dict[str, tuple[float, float]],
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
    limits = None
    if (grid.low, grid.high) != (0, 255):  # a sub-8-bit grid or an activation bound: integer clamp
        limits = [f"{base}_low", f"{base}_high"]
        graph.graph.initializer.append(helper.make_tensor(limits[0], TensorProto.UINT8, [], [grid.low]))
        graph.graph.initializer.append(helper.make_tensor(limits[1], TensorProto.UINT8, [], [grid.high]))
    nodes = quantize_output(start, scale, zero, limits, base)
    current = nodes[-1].output[0]
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
                rename_input(user, dequantize.output[0], dequantized)
        else:
            rename_input(reader, end, dequantized)
    for node in chain:
        remove_node(graph, node)
    position = node_index(graph, producer) + 1
    for offset, node in enumerate(nodes):
        graph.nodes.insert(position + offset, node)


def _output_chain(graph: Graph, start: str) -> tuple[list[Any], float, float]:
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
