"""The measured table times the export's own layer pattern: after onnxruntime's fusion, each
quantized layer of an ``--runtime ort`` export runs the same kernel, on the same stored types,
as the layer model ``haq-rl profile --measure ort-cpu`` times for it."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

onnx = pytest.importorskip("onnx")
onnxruntime = pytest.importorskip("onnxruntime")

from haq_rl.export import export_onnx  # noqa: E402
from haq_rl.export.layer_pattern import layer_model  # noqa: E402
from haq_rl.export.onnx_graph import fused_kernels  # noqa: E402
from haq_rl.hardware.targets import TARGET_TABLE  # noqa: E402
from haq_rl.quant import QuantPolicy  # noqa: E402
from haq_rl.task.task import load_task  # noqa: E402

#: Input positions of the fused kernels that hold the layer's stored types: activation zero point,
#: weight levels, weight zero point, bias, output zero point.
_STORED = {"QLinearConv": {"x_zero": 2, "weight": 3, "weight_zero": 5, "output_zero": 7, "bias": 8},
           "QGemm": {"x_zero": 2, "weight": 3, "weight_zero": 5, "bias": 6, "output_zero": 8}}


def _fused_layers(data: bytes, folder: Path) -> list[tuple[str, dict[str, int], str]]:
    """(kernel, stored type per role, weight initializer name) of every fused Conv/Gemm onnxruntime runs."""
    path = folder / f"optimized-{len(list(folder.glob('optimized-*')))}.onnx"
    fused_kernels(data, str(path))
    model = onnx.load(path)
    types = {init.name: init.data_type for init in model.graph.initializer}
    found = []
    for node in model.graph.node:
        if node.op_type in _STORED:
            roles = {role: types.get(node.input[index]) for role, index in _STORED[node.op_type].items()
                     if index < len(node.input) and node.input[index]}
            found.append((node.op_type, roles, node.input[3]))
    return found


def test_measured_layer_models_are_the_exports_layers(tmp_path):
    task = load_task("haq_rl/LeNet5Size-v1", weight_method="linear", pin_first_last=False)
    spec = tmp_path / "spec.yaml"
    spec.write_text(yaml.safe_dump(task.spec.to_dict()))
    # Sub-8-bit and 8-bit weights (INT8 within +-63 vs UINT8 levels) on conv and linear layers.
    bits = dict(zip(task.layer_names, [(3, 8), (8, 8), (8, 8), (4, 8), (8, 8)], strict=True))
    QuantPolicy(bits).to_json(tmp_path / "policy.json", budget=task.spec.budget, env_id=str(spec))
    result = export_onnx(tmp_path / "policy.json", out=tmp_path / "ort.onnx", runtime="ort", task=task)
    exported = _fused_layers(result.path.read_bytes(), tmp_path)
    by_layer = {weight.removesuffix(".weight_q"): (kernel, roles) for kernel, roles, weight in exported}
    build = TARGET_TABLE["measured"].entry("layer_model")
    assert build is layer_model  # the measured target's row names the export's own builder
    compared = 0
    for layer in task.layers:
        if layer.name not in by_layer or "output_zero" not in by_layer[layer.name][1]:
            continue  # the logits layer keeps a float output (QGemm's float form): no layer alone times it
        data, _ = build(layer, 1, True, False, bits[layer.name][0] >= 8)
        ((kernel, roles, _),) = _fused_layers(data, tmp_path)
        assert (kernel, roles) == by_layer[layer.name], layer.name
        compared += 1
    assert compared == len(task.layers) - 1
    assert {roles["weight"] for _, roles in by_layer.values()} == {onnx.TensorProto.INT8, onnx.TensorProto.UINT8}
