"""haq_rl.finetune: QAT of a policy, the comparison run, checkpoints and evaluation.

Everything runs on LeNet-5 (5 layers, cached pretrained weights, a few seconds per
fine-tune on one CPU thread).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from haq_rl.errors import CheckpointError, ConfigError, MissingPathError, PolicyError
from haq_rl.finetune import (
    FinetuneConfig,
    evaluate_policy,
    finetune_policy,
    finetune_run,
    largest_uniform_within_budget,
    load_finetuned,
    policy_costs,
    uniform_policy,
)
from haq_rl.quant import QuantPolicy
from haq_rl.run.layout import FINETUNED_FILE, METRICS_FILE
from haq_rl.task.spec import resolve_spec
from haq_rl.task.task import Task, load_task

#: A fast mnist5k env whose spec these tests vary (the default env is Fashion-MNIST).
MNIST5K_ENV_ID = "haq_rl/MobileNetV2Edge-v1"

LENET_SIZE_ENV = "haq_rl/LeNet5Size-v1"


@pytest.fixture(scope="module")
def lenet_latency_task() -> Task:
    """The default env's latency task (linear quantizers) with LeNet-5 and no pinned layers."""
    spec = resolve_spec(MNIST5K_ENV_ID).replace(id="test/LeNet5Latency-v0", model="lenet5",
                                                pin_first_last=False)
    return load_task(spec)


@pytest.fixture(scope="module")
def lenet_size_task() -> Task:
    return load_task(LENET_SIZE_ENV)


@pytest.fixture(scope="module")
def finetuned_run(tmp_path_factory) -> tuple[Path, dict]:
    """A uniform-baseline search on LeNet5Size, then finetune_run with the comparison."""
    from haq_rl.search import SearchConfig, run_search

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        run_dir = tmp_path_factory.mktemp("ft") / "run"
        run_search(SearchConfig(env=LENET_SIZE_ENV, method="uniform", episodes=7, out=str(run_dir),
                                progress=False))
        metrics = finetune_run(run_dir, FinetuneConfig(), progress=False)
    finally:
        torch.set_num_threads(threads)
    return run_dir, metrics


@pytest.mark.parametrize("kwargs", [{"epochs": -1}, {"epochs": 1.5}, {"start": "halfway"},
                                    {"start": "supernet", "fold_bn": True}, {"lr": 0.0}, {"lr": float("inf")},
                                    {"batch_size": 1}, {"seed": -1}, {"device": "tpu"}, {"quantizer": "lsq2"},
                                    {"optimizer": "rmsprop"}, {"distill": 1.5}, {"temperature": 0.0},
                                    {"warmup": 0.9}, {"fold_bn": "yes"}])
def test_config_rejects_bad_values(kwargs: dict) -> None:
    with pytest.raises(ConfigError):
        FinetuneConfig(**kwargs)


def test_uniform_policy_follows_env_conventions(lenet_size_task: Task) -> None:
    # Size objective: weight-only, so activations stay at 8 bits; LeNet5Size pins nothing.
    policy = uniform_policy(lenet_size_task, 4)
    assert policy.w_bits.tolist() == [4] * 5 and policy.a_bits.tolist() == [8] * 5
    pinned = load_task(resolve_spec(MNIST5K_ENV_ID).replace(model="lenet5"))
    policy = uniform_policy(pinned, 3)
    assert policy.w_bits.tolist() == [8, 3, 3, 3, 8] and policy.a_bits.tolist() == [8, 3, 3, 3, 8]


def test_costs_of_8_8_are_the_reference(lenet_latency_task: Task) -> None:
    costs = policy_costs(lenet_latency_task, uniform_policy(lenet_latency_task, 8))
    assert costs["cost_ratio"] == pytest.approx(1.0)
    assert costs["latency_ms"] > 0 and costs["size_bytes"] > 0
    bits = largest_uniform_within_budget(lenet_latency_task)
    assert bits is not None
    assert policy_costs(lenet_latency_task, uniform_policy(lenet_latency_task, bits))["within_budget"]


def test_finetune_uniform4_keeps_or_improves_accuracy(lenet_latency_task: Task) -> None:
    before = {k: v.clone() for k, v in lenet_latency_task.model.state_dict().items()}
    result = finetune_policy(lenet_latency_task, uniform_policy(lenet_latency_task, 4), FinetuneConfig(),
                             progress=False)
    # LeNet-5 at 4/4 is already within ~0.5 point of float: fine-tuning must not lose more
    # than a few of the 1,000 test images (the 2-bit test below checks real recovery).
    assert result.accuracy >= result.accuracy_before - 0.5
    assert result.accuracy > 90.0
    # The shared task model is untouched (a copy was fine-tuned).
    after = lenet_latency_task.model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert set(result.export) >= {"state_dict", "quant"}


def test_finetune_recovers_2_bit_accuracy(lenet_latency_task: Task) -> None:
    result = finetune_policy(lenet_latency_task, uniform_policy(lenet_latency_task, 2), FinetuneConfig(),
                             progress=False)
    assert result.accuracy > result.accuracy_before + 5.0


def test_policy_of_another_model_is_rejected(lenet_latency_task: Task) -> None:
    policy = QuantPolicy.uniform([f"blocks.{i}.conv" for i in range(10)], 4, 4)
    with pytest.raises(PolicyError, match="missing layers"):
        finetune_policy(lenet_latency_task, policy, FinetuneConfig(), progress=False)


def test_metrics_rows_and_ratios(finetuned_run: tuple[Path, dict]) -> None:
    run_dir, metrics = finetuned_run
    on_disk = json.loads((run_dir / METRICS_FILE).read_text())
    assert on_disk["rows"] == metrics["rows"]
    assert metrics["format_version"] == 1
    assert metrics["finetune"]["epochs"] == 1 and metrics["accuracy_split"] == "test"
    rows = {row["name"]: row for row in metrics["rows"]}
    assert {"float", "uniform 8/8", "uniform 4/4", "searched"} <= set(rows)
    # LeNet5Size-v1: 40 % of the 8-bit size fits uniform 3-bit weights, not 4-bit.
    assert "uniform 3/3 (largest within budget)" in rows
    eight = rows["uniform 8/8"]
    assert eight["cost_ratio"] == pytest.approx(1.0)
    assert eight["size_ratio"] == pytest.approx(1.0)
    assert eight["latency_ratio"] is None  # the size profile has no latency model
    assert rows["float"]["finetuned"] is False and rows["float"]["w_bits"] is None
    for name in ("uniform 8/8", "uniform 4/4", "searched"):
        row = rows[name]
        assert 0 <= row["accuracy_before"] <= 100 and 0 <= row["accuracy"] <= 100
        assert len(row["w_bits"]) == 5
    assert rows["searched"]["within_budget"] is True
    margin = metrics["searched_vs_uniform4"]
    assert margin["accuracy_margin"] == pytest.approx(rows["searched"]["accuracy"] - rows["uniform 4/4"]["accuracy"])


def test_checkpoint_loads_weights_only_and_reevaluates(finetuned_run: tuple[Path, dict]) -> None:
    run_dir, metrics = finetuned_run
    payload = torch.load(run_dir / FINETUNED_FILE, weights_only=True)
    assert set(payload) >= {"format_version", "state_dict", "quant_params", "policy", "meta"}
    assert payload["meta"]["model"] == "lenet5"
    assert QuantPolicy.from_dict(payload["policy"]) == QuantPolicy.from_json(run_dir / "best_policy.json")
    searched = next(row for row in metrics["rows"] if row["name"] == "searched")
    result = evaluate_policy(LENET_SIZE_ENV, None, run_dir / FINETUNED_FILE)
    assert result["finetuned"] is True
    assert result["accuracy"] == pytest.approx(searched["accuracy"])
    assert result["size_bytes"] == pytest.approx(searched["size_bytes"])
    # Without the checkpoint: post-training quantization, the "before" number.
    ptq = evaluate_policy(LENET_SIZE_ENV, QuantPolicy.from_json(run_dir / "best_policy.json"))
    assert ptq["accuracy"] == pytest.approx(searched["accuracy_before"])


def test_no_compare_fine_tunes_only_the_searched_policy(finetuned_run: tuple[Path, dict], tmp_path: Path) -> None:
    run_dir, _ = finetuned_run
    metrics = finetune_run(run_dir / "best_policy.json", FinetuneConfig(compare=False), out=tmp_path,
                           progress=False)
    assert [row["name"] for row in metrics["rows"]] == ["float", "searched"]
    assert metrics["searched_vs_uniform4"] is None
    assert (tmp_path / FINETUNED_FILE).is_file() and (tmp_path / METRICS_FILE).is_file()


def test_run_dir_without_policy(tmp_path: Path) -> None:
    with pytest.raises(MissingPathError, match="best_policy.json"):
        finetune_run(tmp_path, progress=False)


def test_unreadable_checkpoint(tmp_path: Path) -> None:
    bad = tmp_path / "finetuned.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError):
        load_finetuned(bad)
    torch.save({"state_dict": {}}, bad)
    with pytest.raises(CheckpointError, match="not a haq-rl fine-tuned checkpoint"):
        load_finetuned(bad)


def test_checkpoint_with_a_different_policy_is_rejected(finetuned_run: tuple[Path, dict]) -> None:
    run_dir, _ = finetuned_run
    searched = QuantPolicy.from_json(run_dir / "best_policy.json")
    other = QuantPolicy.from_arrays(searched.layer_names, np.full(5, 5), searched.a_bits)
    with pytest.raises(PolicyError, match="different policy"):
        evaluate_policy(LENET_SIZE_ENV, other, run_dir / FINETUNED_FILE)


def test_a_bare_policy_is_compared_within_its_own_budget(tmp_path: Path) -> None:
    """A policy JSON without its run's config.json keeps the budget it was searched at."""
    from haq_rl.search import SearchConfig, run_search

    run_dir = tmp_path / "run"
    run_search(SearchConfig(env=LENET_SIZE_ENV, method="uniform", episodes=1, budget=0.24, out=str(run_dir),
                            progress=False))
    alone = tmp_path / "alone" / "policy.json"
    alone.parent.mkdir()
    alone.write_text((run_dir / "best_policy.json").read_text())
    metrics = finetune_run(alone, FinetuneConfig(compare=True), progress=False)
    assert metrics["env"]["budget"] == 0.24  # LeNet5Size's default budget is 0.4
    rows = {row["name"]: row for row in metrics["rows"]}
    assert rows["uniform 4/4"]["within_budget"] is False
    assert rows["searched"]["within_budget"] is True
