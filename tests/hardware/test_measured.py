"""haq-rl profile --measure ort-cpu: a lookup profile timed on this machine in onnxruntime."""

from __future__ import annotations

import sys
import warnings

import numpy as np
import pytest
import yaml

pytest.importorskip("onnxruntime")

from haq_rl.cli import main  # noqa: E402
from haq_rl.errors import ConfigError  # noqa: E402
from haq_rl.export.layer_pattern import call_overhead_model, layer_model  # noqa: E402
from haq_rl.hardware import CostTable, load_profile  # noqa: E402
from haq_rl.hardware.cpu import has_vnni, instruction_set  # noqa: E402
from haq_rl.hardware.layer_spec import LayerSpec  # noqa: E402
from haq_rl.hardware.lookup import MeasuredElsewhereWarning  # noqa: E402
from haq_rl.hardware.measured import measure_profile  # noqa: E402

CONV = LayerSpec(name="c", kind="conv", in_channels=8, out_channels=16, kernel=3, stride=2, groups=1,
                 in_h=14, in_w=14, out_h=7, out_w=7)
DEPTHWISE = LayerSpec(name="d", kind="depthwise", in_channels=16, out_channels=16, kernel=3, stride=1, groups=16,
                      in_h=7, in_w=7, out_h=7, out_w=7)
LINEAR = LayerSpec(name="fc", kind="linear", in_channels=16, out_channels=10, kernel=1, stride=1, groups=1,
                   in_h=1, in_w=1, out_h=1, out_w=1)
SPECS = [CONV, DEPTHWISE, LINEAR]


def test_layer_models_fuse_into_integer_kernels(tmp_path):
    import onnx
    import onnxruntime

    for spec, kernel in ((CONV, "QLinearConv"), (DEPTHWISE, "QLinearConv"), (LINEAR, "QGemm")):
        data, x = layer_model(spec, 2, integer=True)
        options = onnxruntime.SessionOptions()
        options.optimized_model_filepath = str(tmp_path / f"{spec.name}.onnx")
        options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
        session = onnxruntime.InferenceSession(data, options, providers=["CPUExecutionProvider"])
        assert kernel in {node.op_type for node in onnx.load(tmp_path / f"{spec.name}.onnx").graph.node}
        float_data, float_x = layer_model(spec, 2, integer=False)
        float_out = onnxruntime.InferenceSession(float_data, providers=["CPUExecutionProvider"]).run(
            None, {"x": float_x})[0]
        assert session.run(None, {"x": x})[0].shape == float_out.shape  # the spec's output shape
        if spec.kind != "linear":
            assert float_out.shape[2:] == (spec.out_h, spec.out_w)


def test_the_call_overhead_is_timed_on_the_layers_own_input():
    """The overhead session copies an input of the layer's shape and type: its time is a call's, not a layer's."""
    import onnxruntime

    for integer in (False, True):
        _, x = layer_model(CONV, 3, integer=integer)
        data, same = call_overhead_model(x.shape, integer)
        assert same.shape == x.shape and same.dtype == x.dtype
        out = onnxruntime.InferenceSession(data, providers=["CPUExecutionProvider"]).run(None, {"x": same})[0]
        assert np.array_equal(out, same)


def test_measured_profile_is_a_lookup_profile(tmp_path):
    path = measure_profile(SPECS, 1, tmp_path, model_name="tiny", repeats=2, warmup=1)
    profile = load_profile(path)
    assert profile.cost_model == "lookup" and profile.params["unit"] == "ms"
    assert profile.params["onnxruntime"] and profile.params["machine"]
    with warnings.catch_warnings():
        warnings.simplefilter("error", MeasuredElsewhereWarning)  # same machine: no warning
        table = CostTable.build(SPECS, profile, max_bits=8)
    latency = table.latency_ms
    assert np.isfinite(latency).all() and (latency > 0).all()
    # No kernel below 8 bits: every weight width below 8 costs the INT8 container; 8-bit weights
    # (UINT8 in the portable export) are a kernel of their own, timed apart.
    assert np.allclose(latency[:, :7, 7], latency[:, :1, 7])
    assert profile.params["instruction_set"] == instruction_set()


def test_wide_layer_model_stores_8bit_weights_as_the_portable_export_does():
    import onnx

    model = onnx.load_from_string(layer_model(CONV, 1, integer=True, wide=True)[0])
    values = {init.name: onnx.numpy_helper.to_array(init) for init in model.graph.initializer}
    assert values["w_q"].dtype == np.uint8 and (values["w_z"] == 128).all() and values["w_q"].max() == 255
    narrow = onnx.load_from_string(layer_model(CONV, 1, integer=True)[0])
    levels = next(onnx.numpy_helper.to_array(i) for i in narrow.graph.initializer if i.name == "w_q")
    assert levels.dtype == np.int8 and np.abs(levels.astype(int)).max() == 63


def _edit_params(path, **params) -> None:
    """Rewrite a measured profile's params as if it had been measured elsewhere."""
    profile = yaml.safe_load(path.read_text())
    profile["params"].update(params)
    path.write_text(yaml.safe_dump(profile))


def test_table_from_a_cpu_with_other_vnni_warns(tmp_path):
    """A table timed with VNNI used without it (or the reverse) warns: the integer kernels differ."""
    path = measure_profile(SPECS, 1, tmp_path, model_name="tiny", repeats=1, warmup=0)
    other = "x86_64: avx2" if has_vnni() else "x86_64: avx512_vnni avx512bw avx2"
    _edit_params(path, instruction_set=other)
    with pytest.warns(MeasuredElsewhereWarning, match="VNNI"):
        CostTable.build(SPECS, load_profile(path), max_bits=8)


def test_other_machine_warns_naming_both(tmp_path):
    path = measure_profile(SPECS, 1, tmp_path, model_name="tiny", repeats=1, warmup=0)
    params = yaml.safe_load(path.read_text())["params"]
    _edit_params(path, onnxruntime=f"0.1-{params['onnxruntime']}", machine=f"Other CPU; {params['machine']}")
    with pytest.warns(MeasuredElsewhereWarning) as caught:
        CostTable.build(SPECS, load_profile(path), max_bits=8)
    message = str(caught[0].message)
    assert "Other CPU" in message and "this one" in message and "0.1-" in message


def test_cli_measures_once_then_reuses(tmp_path, capsys):
    args = ["profile", "--model", "lenet5", "--input-size", "28", "--measure", "ort-cpu", "--repeats", "2",
            "--out", str(tmp_path / "m"), "--no-progress"]
    assert main(args) == 0
    assert "wrote the measured profile" in capsys.readouterr().out
    table = (tmp_path / "m" / "table.csv").read_text()
    assert main(args) == 0
    assert "reusing the measured profile" in capsys.readouterr().out
    assert (tmp_path / "m" / "table.csv").read_text() == table
    assert not [p for p in (tmp_path / "m").iterdir() if p.name.endswith(".tmp")]


def _error(args: list[str], capsys) -> str:
    assert main(args) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1, lines
    return lines[0]


def test_bad_input_is_one_line(tmp_path, capsys, monkeypatch):
    base = ["profile", "--model", "lenet5", "--input-size", "28"]
    assert "--measure 'gpu'" in _error([*base, "--measure", "gpu"], capsys)
    assert "exclude each other" in _error([*base, "--measure", "ort-cpu", "--hw", "bops"], capsys)
    assert "--repeats 0" in _error([*base, "--measure", "ort-cpu", "--repeats", "0"], capsys)
    assert "--hw PROFILE" in _error(base, capsys)
    # A corrupt table: one line.
    path = measure_profile([CONV], 1, tmp_path, model_name="tiny", repeats=1, warmup=0)
    (tmp_path / "table.csv").write_text("layer,w_bits,a_bits,latency\nc,8,8,fast\n")
    assert "bad row" in _error([*base, "--hw", str(path)], capsys)
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    assert "pip install 'haq-rl[export]'" in _error([*base, "--measure", "ort-cpu", "--out",
                                                    str(tmp_path / "x")], capsys)


def test_cached_profile_is_measured_once_and_keyed_by_the_layers(tmp_path, monkeypatch):
    from haq_rl.hardware.measured_cache import cached_measured_profile

    monkeypatch.setenv("HAQ_RL_CACHE", str(tmp_path))
    first, measured = cached_measured_profile("ort-cpu", SPECS, "tiny", repeats=1, progress=False)
    assert measured and first.parent.parent == tmp_path / "measured" / "ort-cpu"
    table = (first.parent / "table.csv").read_text()
    again, measured = cached_measured_profile("ort-cpu", SPECS, "another label", repeats=1, progress=False)
    assert (again, measured) == (first, False)  # same layers: the same table, not timed again
    assert (first.parent / "table.csv").read_text() == table
    other, measured = cached_measured_profile("ort-cpu", [CONV], "tiny", repeats=1, progress=False)
    assert measured and other.parent != first.parent  # other layers: their own table
    (first.parent / "table.csv").write_text("layer,w_bits,a_bits,latency\nc,8,8,fast\n")
    repaired, measured = cached_measured_profile("ort-cpu", SPECS, "tiny", repeats=1, progress=False)
    assert measured and repaired == first  # a damaged table is measured again, in place
    with pytest.raises(ConfigError, match="'gpu'"):
        cached_measured_profile("gpu", SPECS, "tiny")


def test_registered_env_on_this_cpu(tmp_path, monkeypatch):
    """MobileNetV2OrtCpu-v0 times its own layers here on first use; a run's report reads the
    same table, and every policy its size budget admits runs as fast as all-INT8."""
    from haq_rl.run.load import cost_table_for, load_run
    from haq_rl.search import SearchConfig, run_search
    from haq_rl.task import load_task
    from haq_rl.task.budget import cost_ratio

    monkeypatch.setenv("HAQ_RL_CACHE", str(tmp_path / "cache"))
    task = load_task("haq_rl/MobileNetV2OrtCpu-v0")
    assert list((tmp_path / "cache" / "measured" / "ort-cpu").glob("*/table.csv"))
    table = task.cost_table
    assert all(layer.batch == 1 for layer in task.layers)
    latency = table.latency_ms
    assert np.isfinite(latency).all() and np.allclose(latency[:, :7, 7], latency[:, :1, 7])
    eights = np.full(table.num_layers, 8)
    rng = np.random.default_rng(0)
    narrow = cost_ratio(table, "latency", np.full(table.num_layers, 7), eights)
    for _ in range(20):  # weight-only steps below 8 bits: activations stay at 8, one INT8 kernel
        w = rng.integers(2, 8, table.num_layers)
        assert cost_ratio(table, "latency", w, eights) == pytest.approx(narrow)
    result = run_search(SearchConfig(env="haq_rl/MobileNetV2OrtCpu-v0", method="uniform", episodes=1,
                                     out=str(tmp_path / "run"), progress=False))
    assert result.best_cost_ratio <= 0.5
    reread = cost_table_for(load_run(tmp_path / "run"))
    assert np.array_equal(reread.latency_ms, latency) and np.array_equal(reread.size_bytes, table.size_bytes)


def test_measured_target_is_not_a_profile_file(capsys):
    message = _error(["profile", "--model", "lenet5", "--input-size", "28", "--hw", "ort-cpu"], capsys)
    assert "--measure ort-cpu" in message


def test_boundaries_are_timed_on_the_exports_own_quantizers():
    """Where a float layer meets an INT8 one the export writes a QuantizeLinear or a per-channel
    DequantizeLinear: each is built alone on the tensor's shape, round-trips its input, and times positive."""
    import onnxruntime

    from haq_rl.export.layer_pattern import boundary_model
    from haq_rl.hardware.ort_timing import time_boundary

    shape = (2, CONV.in_channels, CONV.in_h, CONV.in_w)
    quantize, x = boundary_model(shape, quantize=True)
    dequantize, _ = boundary_model(shape, quantize=False)
    levels = onnxruntime.InferenceSession(quantize, providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    values = onnxruntime.InferenceSession(dequantize, providers=["CPUExecutionProvider"]).run(None, {"x": levels})[0]
    assert levels.dtype == np.uint8 and values.dtype == np.float32 and values.shape == shape
    assert np.abs(values - np.clip(x, -128 * 0.02, 127 * 0.02)).max() <= 0.01 + 1e-6  # half a step
    q_ms, dq_ms = time_boundary(shape, 3, 1, boundary_model, call_overhead_model)
    assert q_ms > 0 and dq_ms > 0
