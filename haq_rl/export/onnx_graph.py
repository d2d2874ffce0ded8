"""Plain ONNX graph edits the export passes share: name lookups, dead-node removal, initializer swaps,
and the count of onnxruntime's fused kernels."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np


class Graph:
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


def replace_initializer(graph: Graph, name: str, value: np.ndarray) -> None:
    from onnx import numpy_helper

    for index, init in enumerate(graph.graph.initializer):
        if init.name == name:
            graph.graph.initializer[index].CopyFrom(numpy_helper.from_array(value, name))
    graph.constants[name] = value


def node_index(graph: Graph, node: Any) -> int:
    return next(index for index, candidate in enumerate(graph.nodes) if candidate is node)


def remove_node(graph: Graph, node: Any) -> None:
    del graph.nodes[node_index(graph, node)]


def rename_input(node: Any, old: str, new: str) -> None:
    for index, name in enumerate(node.input):
        if name == old:
            node.input[index] = new


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


def drop_dead(graph: Graph) -> None:
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


def replace_nodes(graph: Any, nodes: list[Any]) -> None:
    """Make ``nodes`` the graph's nodes and drop the initializers no node reads any more."""
    del graph.node[:]
    graph.node.extend(nodes)
    used = {name for node in graph.node for name in node.input}
    kept = [init for init in graph.initializer if init.name in used]
    del graph.initializer[:]
    graph.initializer.extend(kept)


def initializer_bytes(onnx: Any, init: Any) -> int:
    """Stored bytes of an initializer (INT4 packs two values per byte)."""
    count = int(np.prod(init.dims)) if init.dims else 1
    if init.data_type in (onnx.TensorProto.INT4, onnx.TensorProto.UINT4):
        return (count + 1) // 2
    return count * np.dtype(onnx.helper.tensor_dtype_to_np_dtype(init.data_type)).itemsize
