"""Attention: nn.MultiheadAttention's projections become quantizable, costed, searchable layers."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest
import torch
from torch import nn

from haq_rl.cli import main
from haq_rl.finetune import FinetuneConfig, evaluate_policy, finetune_run, uniform_policy
from haq_rl.models import (
    ExplicitMultiheadAttention,
    build_model,
    extract_layer_specs,
    make_attention_explicit,
)
from haq_rl.quant import QuantPolicy
from haq_rl.report import load_run, policy_table, write_report
from haq_rl.search import SearchConfig, run_search
from haq_rl.task import Task
from tests.user_models import TinyViT

VIT = "tests.user_models:tiny_vit"


@pytest.mark.parametrize("batch_first", [True, False])
def test_explicit_attention_computes_the_same_function(batch_first):
    torch.manual_seed(0)
    layer = nn.TransformerEncoderLayer(32, 4, 64, dropout=0.0, batch_first=batch_first)
    encoder = nn.TransformerEncoder(layer, 2, enable_nested_tensor=False).eval()
    explicit = copy.deepcopy(encoder)
    assert make_attention_explicit(explicit) == 2
    x = torch.randn(3, 7, 32) if batch_first else torch.randn(7, 3, 32)
    padding = torch.zeros(3, 7, dtype=torch.bool)
    padding[0, 5:] = True
    causal = torch.ones(7, 7, dtype=torch.bool).triu(1)
    with torch.no_grad():
        for kwargs in ({}, {"src_key_padding_mask": padding}, {"mask": causal}):
            torch.testing.assert_close(explicit(x, **kwargs), encoder(x, **kwargs), atol=1e-5, rtol=1e-5)
    mha = nn.MultiheadAttention(16, 2, batch_first=True).eval()
    swapped = ExplicitMultiheadAttention(mha).eval()
    query, memory = torch.randn(2, 5, 16), torch.randn(2, 6, 16)
    with torch.no_grad():
        for got, want in zip(swapped(query, memory, memory), mha(query, memory, memory), strict=True):
            torch.testing.assert_close(got, want, atol=1e-6, rtol=1e-5)


def test_projections_are_costed_per_token_and_per_call():
    model = build_model(VIT, num_classes=10, in_channels=1, input_size=28)
    layers = {layer.name: layer for layer in extract_layer_specs(model, (1, 28, 28), batch=2)}
    tokens = 7 * 7 + 1
    in_proj = layers["encoder.layers.0.self_attn.in_proj"]
    assert in_proj.kind == "linear" and (in_proj.in_channels, in_proj.out_channels) == (32, 96)
    assert in_proj.batch == 2 * tokens and in_proj.macs == 2 * tokens * 32 * 96
    assert layers["encoder.layers.1.self_attn.out_proj"].batch == 2 * tokens
    assert layers["head"].batch == 2  # the class token only

    shared = nn.Linear(4, 4)
    twice = nn.Sequential(shared, nn.ReLU(), shared)  # one module, two calls
    (spec,) = extract_layer_specs(twice, (1, 1, 4), batch=3)  # (C, H, W) = (1, 1, 4): 1 token
    assert spec.batch == 3 * 2


def _digits(part: slice) -> torch.utils.data.TensorDataset:
    from sklearn.datasets import load_digits

    data = load_digits()
    images = torch.tensor(data.images[part], dtype=torch.float32).unsqueeze(1) / 16.0
    return torch.utils.data.TensorDataset(images, torch.tensor(data.target[part], dtype=torch.int64))


@pytest.fixture(scope="module")
def vit_task() -> Task:
    torch.manual_seed(0)
    train, reward, test = _digits(slice(0, 1200)), _digits(slice(1200, 1500)), _digits(slice(1500, None))
    model = TinyViT(input_size=8)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(12):
        for images, labels in torch.utils.data.DataLoader(train, batch_size=64, shuffle=True):
            optimizer.zero_grad()
            nn.functional.cross_entropy(model(images), labels).backward()
            optimizer.step()
    return Task.from_model(model.eval(), search_train=train, reward_val=reward, test=test, name="TinyViT",
                           hardware="bismo-edge", budget=0.5)


def test_with_settings_keeps_tokens_and_follows_the_spec(vit_task):
    from haq_rl.hardware import load_profile

    cloud = vit_task.with_settings(hardware="bismo-cloud", min_bits=3)
    tokens = (8 // 2) ** 2 + 1
    batch = load_profile("bismo-cloud").batch
    in_proj = {layer.name: layer for layer in cloud.layers}["encoder.layers.0.self_attn.in_proj"]
    assert in_proj.batch == batch * tokens and cloud.cost_table.profile_name == "bismo-cloud"
    assert cloud.quant_config.min_bits == 3 and vit_task.quant_config.min_bits == 2
    assert vit_task.with_settings(budget=0.7).cost_table is vit_task.cost_table


def test_vit_search_finetune_evaluate_report(vit_task, tmp_path):
    task = vit_task
    assert "encoder.layers.0.self_attn.in_proj" in task.layer_names
    assert "encoder.layers.1.self_attn.out_proj" in task.layer_names
    assert evaluate_policy(task, uniform_policy(task, 8))["accuracy"] > 80.0
    result = run_search(SearchConfig(method="hawq", out=str(tmp_path / "run"), progress=False), task=task)
    assert result.best_cost_ratio <= 0.5 + 1e-9
    policy = json.loads((tmp_path / "run" / "best_policy.json").read_text())["layers"]
    assert {"encoder.layers.0.self_attn.in_proj", "encoder.layers.0.self_attn.out_proj"} <= set(policy)
    metrics = finetune_run(tmp_path / "run", FinetuneConfig(compare=False), task=task, progress=False)
    searched = next(row for row in metrics["rows"] if row["name"] == "searched")
    assert searched["accuracy"] > 70.0 and searched["within_budget"]
    table = policy_table(load_run(tmp_path / "run"))
    assert set(table.loc[table["layer"].str.contains("self_attn"), "kind"]) == {"linear"}
    assert write_report(tmp_path / "run").is_file()
    pytest.importorskip("onnxruntime")
    from haq_rl.export import export_onnx

    exported = export_onnx(tmp_path / "run", task=task)  # token Linears: Reshape -> QDQ Gemm -> Reshape
    assert exported.finetuned and exported.agreement >= 0.995
    assert exported.onnx_accuracy == pytest.approx(exported.torch_accuracy, abs=0.2)
    assert exported.onnx_accuracy == pytest.approx(searched["accuracy"], abs=0.2)
    onnx = pytest.importorskip("onnx")
    ops = [node.op_type for node in onnx.load(exported.path).graph.node]
    assert ops.count("QuantizeLinear") == len(task.layer_names) and "MatMul" in ops  # scores stay float


def test_vit_weights_from_nn_multiheadattention_load_through_the_cli(tmp_path, capsys):
    torch.manual_seed(0)
    original = TinyViT()  # still nn.MultiheadAttention: keys in_proj_weight / in_proj_bias
    assert any(key.endswith("self_attn.in_proj_weight") for key in original.state_dict())
    torch.save(original.state_dict(), tmp_path / "vit.pt")
    assert main(["profile", "--model", VIT, "--input-size", "28", "--hw", "bismo-edge",
                 "--weights", str(tmp_path / "vit.pt")]) == 0
    assert "encoder.layers.0.self_attn" in capsys.readouterr().out  # its projections are costed
    model = build_model(VIT, num_classes=10, in_channels=1, input_size=28)
    from haq_rl.models import load_weights

    load_weights(model, tmp_path / "vit.pt")
    x = torch.randn(2, 1, 28, 28)
    with torch.no_grad():
        assert np.allclose(model(x).numpy(), original.eval()(x).numpy(), atol=1e-5)


def test_the_supernet_trains_and_scores_an_attention_model(vit_task, tmp_path, monkeypatch):
    """Task.from_model models, attention included, get a supernet like the registered envs:
    its reward at 8 bits is near float, and the fine-tune starts from exactly what it scored."""
    from haq_rl.supernet.handoff import supernet_start
    from haq_rl.task.scoring import scorer_for_task

    monkeypatch.setenv("HAQ_RL_CACHE", str(tmp_path))
    task = vit_task.with_settings(reward_source="supernet", reward_options={"epochs": 1})
    scorer = scorer_for_task(task, progress=False)
    high = scorer.score(*scorer.uniform(8), enforce=False)
    low = scorer.score(*scorer.uniform(2), enforce=False)
    assert high["kl"] < low["kl"] and high["accuracy"] > scorer.evaluator.float_accuracy - 10
    w, a = scorer.uniform(4)
    model = supernet_start(task, QuantPolicy.from_arrays(task.layer_names, w, a), progress=False)
    correct = total = 0
    with torch.no_grad():
        for inputs, labels in task.reward_batches():
            correct += int((model(inputs).argmax(1) == labels).sum())
            total += len(labels)
    assert 100.0 * correct / total == pytest.approx(scorer.evaluator.scores(w, a).accuracy)
