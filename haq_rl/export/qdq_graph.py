"""The reference QDQ graph of a quantized model: torch's float graph with every quantized layer's
weight as integers + DequantizeLinear and its input activation as Clip -> QuantizeLinear ->
DequantizeLinear (the rules are in ``onnx_qdq``'s docstring)."""

from __future__ import annotations

import io
import warnings
from typing import Any

import numpy as np
import torch

from haq_rl.errors import ConfigError
from haq_rl.export.onnx_graph import live_nodes, replace_nodes
from haq_rl.export.runtimes import RuntimeForm
from haq_rl.quant import QuantPolicy
from haq_rl.task.task import Task

#: What torch's TorchScript exporter writes; the graph is then raised to ``opset``.
_TORCH_OPSET = 20


def qdq_model(onnx: Any, task: Task, plain: torch.nn.Module, quant: dict[str, Any],
              policy: QuantPolicy, opset: int, int4: bool = True) -> Any:
    """The float graph of ``plain`` (holding the quantized weights), with QDQ around every quantized layer."""

    plain = plain.cpu().eval()
    state = plain.state_dict()
    example = task.splits.test.tensors[0][:1]
    buffer = io.BytesIO()
    with warnings.catch_warnings():  # torch's TorchScript exporter is deprecated, still complete
        warnings.simplefilter("ignore", DeprecationWarning)
        torch_export(plain, example, buffer, opset)
    model = onnx.load_from_string(buffer.getvalue())
    graph = model.graph
    alias = {node.output[0]: node.input[0] for node in graph.node if node.op_type == "Identity"}
    _token_linears_as_gemm(graph, alias)
    use_int4 = int4 and opset >= 21
    weight_users, compute_nodes = _layer_nodes(graph, alias, quant)
    new_nodes = []
    done = set()
    for index, node in enumerate(list(graph.node)):
        layer = weight_users.get(index)
        if layer is not None:  # the node that reads the float weight: read its dequantized integers
            new_nodes.append(_dequantized_weight(graph, node, layer, state, quant[layer], use_int4))
            done.add(layer)
        layer = compute_nodes.get(index)
        if layer is not None:  # the Conv / Gemm / MatMul: quantize its input activation first
            new_nodes += _quantized_input(graph, node, layer, quant[layer])
        new_nodes.append(node)
    missing = [name for name in policy.layer_names if name not in done]
    if missing:
        raise ConfigError(f"these layers did not export as Conv, Gemm or Transpose+MatMul with their weight: "
                          f"{', '.join(missing[:3])}")
    # The float copies of the quantized weights, and the Identity nodes that passed them
    # on, are no longer used: drop dead nodes (outputs nobody reads), then unused initializers.
    replace_nodes(graph, live_nodes(new_nodes, (output.name for output in graph.output)))
    for entry in model.opset_import:
        if entry.domain in ("", "ai.onnx"):
            entry.version = opset
    return model


def reference_form(model: Any, layers: list[str], task: Task, isa: str) -> RuntimeForm:
    """The ``reference`` runtime's handler: the exact simulation keeps each quantized layer's bias float."""
    biases_as_add(model.graph, layers)
    return RuntimeForm()


def biases_as_add(graph: Any, layers: list[str]) -> None:
    """Move the float bias of each quantized layer's Conv/Gemm into an ``Add`` right after it.

    From ``ORT_ENABLE_BASIC`` on, onnxruntime quantizes the constant bias of a Conv/Gemm whose
    input and weight come from DequantizeLinear to INT32 at the step ``a_scale * w_scale``.
    At 2-4 bits that step is coarse: on a LeNet-5 layer with 2-bit weights and activations
    the bias moved by up to 0.06, and 0.6 % of the test images changed class. A separate
    ``Add`` keeps the bias float, so onnxruntime computes what PyTorch does.
    """
    from onnx import helper, numpy_helper

    initializers = {init.name: init for init in graph.initializer}
    weights = {f"{layer}.weight_dq": layer for layer in layers}
    nodes = []
    for node in graph.node:
        nodes.append(node)
        layer = weights.get(node.input[1]) if node.op_type in ("Conv", "Gemm") and len(node.input) > 2 else None
        if layer is None or node.input[2] not in initializers:
            continue
        bias = numpy_helper.to_array(initializers[node.input[2]]).astype(np.float32)
        if node.op_type == "Gemm":
            bias = bias * next((a.f for a in node.attribute if a.name == "beta"), 1.0)
        else:  # (C,) -> (C, 1, ..., 1): one value per output channel of an NC... output
            rank = len(initializers[f"{layer}.weight_q"].dims)
            bias = bias.reshape(-1, *([1] * (rank - 2)))
        name, output = f"{layer}.bias_add", node.output[0]
        graph.initializer.append(numpy_helper.from_array(bias.astype(np.float32), name))
        del node.input[2]
        node.output[0] = f"{output}_without_bias"
        nodes.append(helper.make_node("Add", [node.output[0], name], [output], name=f"{layer}/bias_add"))
    replace_nodes(graph, nodes)


def _token_linears_as_gemm(graph: Any, alias: dict[str, str]) -> None:
    """Rewrite ``MatMul(x, Transpose(W))`` (a Linear on token inputs: attention projections,
    transformer MLPs) as ``Reshape(Gemm(Reshape(x, [-1, in]), W, transB=1), shape(x)[:-1] + [out])``.

    The same function, in the 2-D Gemm form that onnxruntime runs in QDQ; its own fusion
    of QDQ MatMul + Add into Gemm fails to load (mismatched zero-point types, 1.31).
    """
    from onnx import helper, numpy_helper

    initializers = {init.name: init for init in graph.initializer}
    producers = {output: node for node in graph.node for output in node.output}
    rewritten = []
    for node in list(graph.node):
        transpose = producers.get(node.input[1]) if node.op_type == "MatMul" and len(node.input) == 2 else None
        if transpose is None or transpose.op_type != "Transpose":
            rewritten.append(node)
            continue
        weight = alias.get(transpose.input[0], transpose.input[0])
        if weight not in initializers or len(initializers[weight].dims) != 2:
            rewritten.append(node)
            continue
        out_features, in_features = (int(d) for d in initializers[weight].dims)
        base = node.output[0]
        names = {key: f"{base}/token_{key}" for key in ("flat_shape", "flat", "gemm", "shape", "lead", "tail",
                                                       "starts", "ends", "out_shape")}
        graph.initializer.extend([
            numpy_helper.from_array(np.array([-1, in_features], np.int64), names["flat_shape"]),
            numpy_helper.from_array(np.array([out_features], np.int64), names["tail"]),
            numpy_helper.from_array(np.array([0], np.int64), names["starts"]),
            numpy_helper.from_array(np.array([-1], np.int64), names["ends"]),
        ])
        rewritten += [
            helper.make_node("Reshape", [node.input[0], names["flat_shape"]], [names["flat"]]),
            helper.make_node("Gemm", [names["flat"], transpose.input[0]], [names["gemm"]], transB=1),
            helper.make_node("Shape", [node.input[0]], [names["shape"]]),
            helper.make_node("Slice", [names["shape"], names["starts"], names["ends"]], [names["lead"]]),
            helper.make_node("Concat", [names["lead"], names["tail"]], [names["out_shape"]], axis=0),
            helper.make_node("Reshape", [names["gemm"], names["out_shape"]], [node.output[0]]),
        ]
    del graph.node[:]
    graph.node.extend(rewritten)


def _layer_nodes(graph: Any, alias: dict[str, str], quant: dict[str, Any]) -> tuple[dict[int, str], dict[int, str]]:
    """For each quantized layer (by node index): the node that reads its weight initializer and the node that
    computes with it. A Conv or Gemm is both; a Linear on token inputs exports as
    Transpose(weight) -> MatMul, the Transpose reading and the MatMul computing."""
    def layer_of(name: str) -> str | None:
        for candidate in (name, alias.get(name, name)):  # dedup may alias equal weights
            layer = candidate.removesuffix(".weight") if candidate.endswith(".weight") else None
            if layer in quant:
                return layer
        return None

    nodes = list(graph.node)
    producers = {output: index for index, node in enumerate(nodes) for output in node.output}
    weight_users: dict[int, str] = {}
    compute: dict[int, str] = {}
    for index, node in enumerate(nodes):
        if node.op_type in ("Conv", "Gemm") and len(node.input) > 1 and (layer := layer_of(node.input[1])):
            if node.op_type == "Gemm" and not any(a.name == "transB" and a.i == 1 for a in node.attribute):
                raise ConfigError(f"layer {layer!r} exports as a Gemm without transB; not supported")
            weight_users[index] = compute[index] = layer
        elif node.op_type == "MatMul" and node.input[1] in producers:
            transpose = producers[node.input[1]]
            if nodes[transpose].op_type == "Transpose" and (layer := layer_of(nodes[transpose].input[0])):
                raise ConfigError(f"layer {layer!r} exports as Transpose + MatMul, which has no QDQ form here")
    return weight_users, compute


def _dequantized_weight(graph: Any, reader: Any, layer: str, state: dict[str, torch.Tensor],
                        params: dict[str, Any], use_int4: bool) -> Any:
    """Integer weight + per-channel scale initializers and the DequantizeLinear that ``reader`` now reads."""
    from onnx import TensorProto, helper, numpy_helper

    w_bits = int(params["w_bits"])
    if params["w_scale"] is None:
        raise ConfigError(f"layer {layer!r} has {w_bits}-bit weights without a linear scale; not exportable")
    weight = state[f"{layer}.weight"].detach().float().cpu()
    scale = torch.tensor(params["w_scale"], dtype=torch.float32)
    levels = torch.round(weight / scale.reshape(-1, *([1] * (weight.dim() - 1))))
    narrow = use_int4 and w_bits <= 4
    dtype = TensorProto.INT4 if narrow else TensorProto.INT8
    q_name, s_name, z_name = f"{layer}.weight_q", f"{layer}.weight_scale", f"{layer}.weight_zero"
    graph.initializer.append(_integer_tensor(q_name, levels.to(torch.int8).numpy(), narrow))
    graph.initializer.append(numpy_helper.from_array(scale.numpy(), s_name))
    graph.initializer.append(helper.make_tensor(z_name, dtype, [len(scale)], [0] * len(scale)))
    dq_weight = f"{layer}.weight_dq"
    position = 1 if reader.op_type in ("Conv", "Gemm") else 0
    reader.input[position] = dq_weight
    return helper.make_node("DequantizeLinear", [q_name, s_name, z_name], [dq_weight], axis=0,
                            name=f"{layer}/weight_dequantize")


def _quantized_input(graph: Any, node: Any, layer: str, params: dict[str, Any]) -> list[Any]:
    """Clip -> QuantizeLinear -> DequantizeLinear on ``node``'s input, which then reads the result."""
    from onnx import TensorProto, helper, numpy_helper

    a_bits, signed, a_scale = int(params["a_bits"]), bool(params["a_signed"]), float(params["a_scale"])
    # An LSQ+ zero point z (signed inputs; 0 in older checkpoints) shifts the grid:
    # values (q - z) * scale for q in the signed range, i.e. QuantizeLinear's zero point z.
    zero = int(params.get("a_zero_point", 0))
    low, high = (-(2 ** (a_bits - 1)) - zero, 2 ** (a_bits - 1) - 1 - zero) if signed else (0, 2 ** a_bits - 1)
    names = {key: f"{layer}.input_{key}" for key in ("low", "high", "scale", "zero", "clipped", "q", "dq")}
    graph.initializer.extend([
        numpy_helper.from_array(np.array(low * a_scale, np.float32), names["low"]),
        numpy_helper.from_array(np.array(high * a_scale, np.float32), names["high"]),
        numpy_helper.from_array(np.array(a_scale, np.float32), names["scale"]),
        # INT8 for every activation (unsigned ones as zero point -128): onnxruntime's MatMul
        # fusions mishandle a UINT8 zero point next to INT8 weights.
        helper.make_tensor(names["zero"], TensorProto.INT8, [], [zero if signed else -128]),
    ])
    nodes = [
        helper.make_node("Clip", [node.input[0], names["low"], names["high"]], [names["clipped"]],
                         name=f"{layer}/input_clip"),
        helper.make_node("QuantizeLinear", [names["clipped"], names["scale"], names["zero"]], [names["q"]],
                         name=f"{layer}/input_quantize"),
        helper.make_node("DequantizeLinear", [names["q"], names["scale"], names["zero"]], [names["dq"]],
                         name=f"{layer}/input_dequantize"),
    ]
    node.input[0] = names["dq"]
    return nodes


def _integer_tensor(name: str, values: np.ndarray, int4: bool) -> Any:
    """An INT8 initializer, or an INT4 one packed two values per byte (first in the low nibble)."""
    from onnx import TensorProto, helper, numpy_helper

    if not int4:
        return numpy_helper.from_array(values.astype(np.int8), name)
    flat = values.astype(np.int8).reshape(-1)
    nibbles = (flat & 0x0F).astype(np.uint8)
    if len(nibbles) % 2:
        nibbles = np.append(nibbles, np.uint8(0))
    packed = nibbles[0::2] | (nibbles[1::2] << 4)
    return helper.make_tensor(name, TensorProto.INT4, list(values.shape), packed.tobytes(), raw=True)


def torch_export(model: torch.nn.Module, example: torch.Tensor, buffer: io.BytesIO, opset: int) -> None:
    torch.onnx.export(model, (example,), buffer,  # type: ignore[arg-type]
                      dynamo=False, opset_version=min(opset, _TORCH_OPSET),
                      do_constant_folding=False, training=torch.onnx.TrainingMode.PRESERVE,
                      input_names=["input"], output_names=["scores"],
                      dynamic_axes={"input": {0: "batch"}, "scores": {0: "batch"}})
