"""Mixed float/INT8 exports (issue 38, item 4): a policy keeps a layer float with w_bits 16 or 32;
with ``--runtime ort`` the INT8 layers fuse into integer kernels, the float ones stay float
kernels, and onnxruntime agrees with PyTorch."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

from onnx import numpy_helper  # noqa: E402

from haq_rl.cli import main  # noqa: E402
from haq_rl.export import export_onnx  # noqa: E402
from haq_rl.quant import QuantPolicy  # noqa: E402
from haq_rl.task.task import load_task  # noqa: E402

#: The ops a float Conv/Gemm runs as in onnxruntime's optimized graph (Conv + Relu fuse into FusedConv).
FLOAT_KERNELS = ("Conv", "FusedConv", "Gemm", "FusedGemm", "MatMul", "FusedMatMul")


def _mixed_policy(folder: Path, env_id: str) -> tuple[Path, object, list[str]]:
    """Every other layer float (w_bits 32), the rest 8/8, as a policy JSON next to the task's spec."""
    task = load_task(env_id, weight_method="linear", pin_first_last=False)
    spec = folder / "spec.yaml"
    spec.write_text(yaml.safe_dump(task.spec.to_dict()))
    floats = task.layer_names[1::2]
    bits = {name: (32, 32) if name in floats else (8, 8) for name in task.layer_names}
    path = folder / "policy.json"
    QuantPolicy(bits).to_json(path, budget=task.spec.budget, env_id=str(spec))
    return path, task, floats


def test_residual_network_mixes_float_and_integer_kernels(tmp_path):
    policy_path, task, floats = _mixed_policy(tmp_path, "haq_rl/ResNet8Edge-v0")
    result = export_onnx(policy_path, out=tmp_path / "ort.onnx", runtime="ort", task=task)
    quantized = len(task.layer_names) - len(floats)
    assert result.float_layers == floats
    assert result.integer_kernels == quantized  # every INT8 layer fused, no float layer quantized by onnxruntime
    assert sum(result.kernels.get(op, 0) for op in FLOAT_KERNELS) == len(floats)
    assert abs(result.onnx_accuracy - result.torch_accuracy) <= 0.3 and result.agreement >= 0.99
    model = onnx.load(result.path)
    meta = {entry.key: entry.value for entry in model.metadata_props}
    storage = json.loads(meta["weight_storage"])
    assert {name for name, entry in storage.items() if entry["weight_container"] == "FLOAT"} == set(floats)
    assert json.loads(meta["policy"])["layers"][floats[0]] == {"w_bits": 32, "a_bits": 32}
    assert meta["cost_ratio"].startswith("none")
    # The float layers keep the model's own float weights (BatchNorm unfolded), no integer copy.
    values = {init.name: numpy_helper.to_array(init) for init in model.graph.initializer}
    for name in floats:
        assert f"{name}.weight_q" not in values
        torch_weight = dict(task.model.named_parameters())[f"{name}.weight"].detach().cpu().numpy()
        assert any(value.shape == torch_weight.shape and np.array_equal(value, torch_weight)
                   for value in values.values()), name


def test_reference_form_leaves_float_layers_unquantized(tmp_path):
    policy_path, task, floats = _mixed_policy(tmp_path, "haq_rl/LeNet5Size-v1")
    result = export_onnx(policy_path, out=tmp_path / "reference.onnx", runtime="reference", task=task)
    assert result.agreement >= 0.99 and result.float_layers == floats
    names = {init.name for init in onnx.load(result.path).graph.initializer}
    assert {f"{name}.weight_q" for name in task.layer_names if name not in floats} <= names
    assert not {f"{name}.weight_q" for name in floats} & names
    assert not {f"{name}.input_q" for name in floats} & {out for node in onnx.load(result.path).graph.node
                                                        for out in node.output}


def test_a_policy_of_float_layers_only_is_one_line(tmp_path, capsys):
    task = load_task("haq_rl/LeNet5Size-v1", weight_method="linear", pin_first_last=False)
    spec = tmp_path / "spec.yaml"
    spec.write_text(yaml.safe_dump(task.spec.to_dict()))
    QuantPolicy({name: (16, 16) for name in task.layer_names}).to_json(tmp_path / "p.json", env_id=str(spec))
    assert main(["export", str(tmp_path / "p.json"), "--runtime", "ort"]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and "every layer float" in lines[0]
    assert not (tmp_path / "model.onnx").exists()
