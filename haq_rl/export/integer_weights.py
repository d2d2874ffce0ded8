"""The integer form's passes over each quantized layer's weights and bias (see ``integer_form``):
BatchNorm folded into the weight scale, sub-8-bit levels widened, 8-bit levels stored as the
portable form stores them, biases as INT32, input zero points as UINT8. The storage rules
themselves are ``layer_pattern``'s, shared with the measured table."""

from __future__ import annotations

from typing import Any

import numpy as np

from haq_rl.export.layer_pattern import WIDE_LEVEL, integer_bias, stored_levels
from haq_rl.export.onnx_graph import Graph, node_index, remove_node, replace_initializer


def weight_layer(graph: Graph, node: Any) -> str | None:
    """The layer whose dequantized integer weight ``node`` (a Conv or Gemm) reads, else None."""
    if node.op_type not in ("Conv", "Gemm") or len(node.input) < 2:
        return None
    reader = graph.producer.get(node.input[1])
    if reader is None or reader.op_type != "DequantizeLinear" or not reader.name.endswith("/weight_dequantize"):
        return None
    return reader.name.removesuffix("/weight_dequantize")


def _is_dequantized(graph: Graph, name: str) -> bool:
    node = graph.producer.get(name)
    return node is not None and node.op_type == "DequantizeLinear"


def fold_batchnorms(graph: Graph, layers: set[str]) -> int:
    """Fold each BatchNormalization that alone reads a quantized conv into its weight scale and bias."""
    folded = 0
    for conv in list(graph.nodes):
        layer = weight_layer(graph, conv)
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
        replace_initializer(graph, levels_name, (levels * sign).astype(np.int8))
        replace_initializer(graph, scale_name, np.maximum(scale * np.abs(gain), 1e-12).astype(np.float32))
        bias_name = graph.add_initializer(f"{layer}.folded_bias", (beta + (bias - mean) * gain).astype(np.float32))
        del conv.input[2:]
        conv.input.append(bias_name)
        conv.output[0] = bn.output[0]
        remove_node(graph, bn)
        folded += 1
    return folded


def widen_levels(graph: Graph, layer: str) -> None:
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
    factor = np.maximum(1, WIDE_LEVEL // np.maximum(peak, 1))
    if (factor == 1).all():
        return
    if scale.size == 1:  # per-tensor scale: one factor for all channels
        factor = np.full(len(levels), factor.min())
        scale = scale.reshape(-1)[0] / factor[:1]
    else:
        scale = scale / factor
    shape = (-1, *([1] * (levels.ndim - 1)))
    replace_initializer(graph, levels_name, (levels * factor.reshape(shape)).astype(np.int8))
    replace_initializer(graph, scale_name, scale.astype(np.float32).reshape(graph.constants[scale_name].shape))


def unsigned_weight(graph: Graph, layer: str) -> bool:
    """Store a layer's weights as UINT8 ``levels + 128`` with zero point 128 when a level exceeds
    ``WIDE_LEVEL`` (an 8-bit grid): ``layer_pattern.stored_levels``, the U8U8 kernel that cannot saturate."""
    from onnx import TensorProto, helper

    stored, zero_point = stored_levels(graph.constants[f"{layer}.weight_q"])
    if zero_point == 0:
        return False
    replace_initializer(graph, f"{layer}.weight_q", stored)
    zero_name = f"{layer}.weight_zero"
    zero = graph.constants.get(zero_name)
    count = 1 if zero is None else int(zero.size)
    shape = [] if zero is None or zero.ndim == 0 else list(zero.shape)
    for index, init in enumerate(graph.graph.initializer):
        if init.name == zero_name:
            graph.graph.initializer[index].CopyFrom(helper.make_tensor(zero_name, TensorProto.UINT8, shape, [zero_point] * count))
    graph.constants[zero_name] = np.full(shape, zero_point, np.uint8)
    return True


def integer_biases(graph: Graph, producers: list[Any]) -> None:
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
        levels, scale = integer_bias(bias, input_scale, weight_scale)
        name = f"{node.input[2]}/int32"
        graph.add_initializer(f"{name}_q", levels)
        graph.add_initializer(f"{name}_scale", scale)
        graph.graph.initializer.append(helper.make_tensor(f"{name}_zero", TensorProto.INT32, [len(scale)],
                                                          [0] * len(scale)))
        dequantize = helper.make_node("DequantizeLinear", [f"{name}_q", f"{name}_scale", f"{name}_zero"],
                                      [f"{name}_dq"], axis=0, name=f"{name}/dequantize")
        graph.nodes.insert(node_index(graph, node), dequantize)
        node.input[2] = f"{name}_dq"


def unsigned_inputs(graph: Graph) -> None:
    """The reference's remaining input quantizers (INT8 zero point z) as UINT8 (z + 128): the same grid."""
    from onnx import TensorProto, helper

    for index, init in enumerate(graph.graph.initializer):
        if init.name.endswith(".input_zero") and init.data_type == TensorProto.INT8:
            zero = int(graph.constants[init.name].reshape(-1)[0]) + 128
            graph.graph.initializer[index].CopyFrom(helper.make_tensor(init.name, TensorProto.UINT8, [], [zero]))
