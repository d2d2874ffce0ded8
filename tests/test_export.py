"""haq-rl export: ONNX in QDQ form with the searched bits, checked in onnxruntime."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

from haq_rl.cli import main  # noqa: E402
from haq_rl.export import export_onnx  # noqa: E402
from haq_rl.finetune import FinetuneConfig, evaluate_policy, finetune_run, uniform_policy  # noqa: E402
from haq_rl.quant import QuantPolicy  # noqa: E402
from haq_rl.run.layout import CONFIG_FILE, LOCK_FILE  # noqa: E402
from haq_rl.search import SearchConfig, run_search  # noqa: E402
from haq_rl.task.spec import TaskSpec  # noqa: E402
from haq_rl.task.task import load_task  # noqa: E402

#: LeNet-5 with linear (not k-means) weights under a latency budget: exportable, fast.
SETTINGS = {"weight_method": "linear", "pin_first_last": False}


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("export") / "run"
    run_search(SearchConfig(env="haq_rl/LeNet5Size-v1", method="random", episodes=6, budget=0.5,
                            hardware="bismo-edge", objective="latency", env_overrides=SETTINGS,
                            out=str(out), progress=False))
    finetune_run(out, FinetuneConfig(compare=False), progress=False)
    return out


def _task(run: Path):
    return load_task(TaskSpec.from_dict(json.loads((run / CONFIG_FILE).read_text())["env"]))


def test_export_matches_pytorch_fake_quant(run_dir, capsys):
    assert main(["export", str(run_dir)]) == 0
    printed = capsys.readouterr().out
    assert "fine-tuned" in printed and "onnxruntime" in printed
    model = onnx.load(run_dir / "model.onnx")
    onnx.checker.check_model(model)
    meta = {entry.key: entry.value for entry in model.metadata_props}
    policy = QuantPolicy.from_json(run_dir / "best_policy.json")
    assert QuantPolicy.from_dict(json.loads(meta["policy"])) == policy and meta["objective"] == "latency"
    assert {"profile", "profile_sha256", "cost_ratio", "haq_rl_version"} <= set(meta)
    ops = [node.op_type for node in model.graph.node]
    assert ops.count("QuantizeLinear") == len(policy.layer_names) == ops.count("Clip")
    result = export_onnx(run_dir, force=True)
    evaluated = evaluate_policy(_task(run_dir), policy, run_dir / "finetuned.pt")
    assert result.onnx_accuracy == pytest.approx(evaluated["accuracy"], abs=0.2)
    assert result.agreement >= 0.995


def test_weight_bytes_follow_the_bits(run_dir, tmp_path):
    task = _task(run_dir)
    bytes_at = {}
    for bits in (8, 4):
        folder = tmp_path / f"u{bits}"
        folder.mkdir()
        shutil.copy(run_dir / CONFIG_FILE, folder / CONFIG_FILE)
        uniform_policy(task, bits).to_json(folder / "policy.json", budget=1.0)
        result = export_onnx(folder / "policy.json")  # no checkpoint: post-training
        assert not result.finetuned and result.agreement >= 0.99
        bytes_at[bits] = result.weight_bytes
    assert bytes_at[4] <= 0.6 * bytes_at[8]


def test_low_bit_layers_keep_a_float_bias_in_onnxruntime(run_dir, tmp_path):
    """onnxruntime's QDQ optimizer rounds a Conv/Gemm's constant bias to INT32 at the step
    a_scale * w_scale; with 2-bit weights and activations on classifier.1 that moved logits
    by up to 2.3 and 6 of 1,000 test images changed class (96.5 vs 96.9 %). The reference
    export keeps each bias in its own Add, so onnxruntime computes what PyTorch does."""
    task = _task(run_dir)
    bits = {"features.0": (7, 4), "features.4": (6, 7), "classifier.1": (2, 2), "classifier.3": (6, 2),
            "classifier.5": (5, 4)}
    shutil.copy(run_dir / CONFIG_FILE, tmp_path / CONFIG_FILE)
    QuantPolicy([(name, *bits[name]) for name in task.layer_names]).to_json(tmp_path / "policy.json", budget=1.0)
    result = export_onnx(tmp_path / "policy.json", task=task)  # post-training: no checkpoint
    # Float summation order alone moves logits by ~1e-6: no image may change class.
    assert result.agreement == 1.0 and result.onnx_accuracy == pytest.approx(result.torch_accuracy, abs=1e-9)
    model = onnx.load(result.path)
    computing = [node for node in model.graph.node if node.op_type in ("Conv", "Gemm")]
    assert len(computing) == len(bits) and all(len(node.input) == 2 for node in computing)
    assert sum(node.op_type == "Add" for node in model.graph.node) == len(bits)


def test_bad_input_is_one_line(run_dir, tmp_path, capsys):
    def error(args: list[str]) -> str:
        assert main(args) == 2
        lines = capsys.readouterr().err.strip().splitlines()
        assert len(lines) == 1, lines
        return lines[0]

    shutil.copy(run_dir / CONFIG_FILE, tmp_path / CONFIG_FILE)
    QuantPolicy.uniform([f"blocks.{i}.conv" for i in range(4)], 4, 4).to_json(tmp_path / "other.json")
    assert "missing layers" in error(["export", str(tmp_path / "other.json")])
    (tmp_path / "broken.pt").write_bytes(b"not a checkpoint")
    assert "cannot read checkpoint" in error(["export", str(run_dir), "--checkpoint", str(tmp_path / "broken.pt"),
                                              "--out", str(tmp_path / "x.onnx")])
    (tmp_path / "taken.onnx").write_bytes(b"keep me")
    assert "--force" in error(["export", str(run_dir), "--out", str(tmp_path / "taken.onnx")])
    assert (tmp_path / "taken.onnx").read_bytes() == b"keep me"


def test_killed_export_leaves_no_partial_file(run_dir, tmp_path):
    target = tmp_path / "killed.onnx"
    process = subprocess.Popen([sys.executable, "-m", "haq_rl", "export", str(run_dir), "--out", str(target)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while not ((tmp_path / LOCK_FILE).is_file() and (tmp_path / LOCK_FILE).read_text().strip()):
        assert time.monotonic() < deadline and process.poll() is None
        time.sleep(0.05)
    time.sleep(0.5)
    process.send_signal(signal.SIGKILL)
    process.wait()
    if target.exists():  # a late kill: then the file is whole
        onnx.checker.check_model(onnx.load(target))
    assert main(["export", str(run_dir), "--out", str(target), "--force"]) == 0
    onnx.checker.check_model(onnx.load(target))
    assert not [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    assert os.path.getsize(target) > 0


def test_without_onnx_the_error_names_the_extra(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "onnx", None)  # import onnx now raises ImportError
    assert main(["export", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "pip install 'haq-rl[export]'" in err[0]
