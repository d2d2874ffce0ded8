"""``haq-rl finetune`` and ``haq-rl evaluate`` in-process on LeNet5Size (fast)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from haq_rl.cli import main

ENV = "haq_rl/LeNet5Size-v1"


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    from haq_rl.search import SearchConfig, run_search

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        out = tmp_path_factory.mktemp("cli") / "run"
        run_search(SearchConfig(env=ENV, method="uniform", episodes=7, out=str(out), progress=False))
    finally:
        torch.set_num_threads(threads)
    return out


@pytest.fixture(scope="module")
def finetuned(run_dir: Path) -> Path:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        assert main(["finetune", str(run_dir), "--no-progress"]) == 0
    finally:
        torch.set_num_threads(threads)
    return run_dir


def test_finetune_writes_files_and_prints_table(finetuned: Path, capsys) -> None:
    assert (finetuned / "finetuned.pt").is_file() and (finetuned / "metrics.json").is_file()
    assert not list(finetuned.glob(".*.tmp"))  # atomic writes leave no temp files
    metrics = json.loads((finetuned / "metrics.json").read_text())
    names = [row["name"] for row in metrics["rows"]]
    assert names[0] == "float" and names[-1] == "searched" and "uniform 4/4" in names


def test_finetune_output(run_dir: Path, tmp_path: Path, capsys) -> None:
    assert main(["finetune", str(run_dir / "best_policy.json"), "--no-compare", "--no-progress",
                 "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "searched" in out and "uniform 4/4" not in out and "test split" in out
    assert (tmp_path / "finetuned.pt").is_file()


def test_evaluate_checkpoint_reproduces_finetuned_accuracy(finetuned: Path, capsys) -> None:
    metrics = json.loads((finetuned / "metrics.json").read_text())
    searched = next(row for row in metrics["rows"] if row["name"] == "searched")
    capsys.readouterr()
    assert main(["evaluate", "--checkpoint", str(finetuned / "finetuned.pt"), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["accuracy"] == pytest.approx(searched["accuracy"])
    assert result["env"] == ENV and result["finetuned"] is True
    # Same with the policy given explicitly, as a table.
    assert main(["evaluate", str(finetuned / "best_policy.json"), "--checkpoint",
                 str(finetuned / "finetuned.pt")]) == 0
    out = capsys.readouterr().out
    assert f"{searched['accuracy']:.2f}" in out and "fine-tuned checkpoint" in out


def test_evaluate_uniform(capsys) -> None:
    assert main(["evaluate", "--uniform", "8", "--env", ENV, "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["cost_ratio"] == pytest.approx(1.0) and result["size_ratio"] == pytest.approx(1.0)
    assert result["finetuned"] is False and result["accuracy"] > 90


def _one_line_error(capsys) -> str:
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    return err


def test_run_dir_without_policy_exits_2(tmp_path: Path, capsys) -> None:
    assert main(["finetune", str(tmp_path), "--no-progress"]) == 2
    assert "best_policy.json" in _one_line_error(capsys)


def test_policy_of_another_model_exits_2(tmp_path: Path, capsys) -> None:
    from haq_rl.models import build_model, quantizable_layers
    from haq_rl.quant import QuantPolicy

    names = [name for name, _ in quantizable_layers(build_model("mobilenetv2", input_size=28))]
    path = QuantPolicy.uniform(names, 4, 4).to_json(tmp_path / "policy.json")
    assert main(["finetune", str(path), "--env", ENV, "--no-progress"]) == 2
    err = _one_line_error(capsys)
    assert "missing layers" in err and "extra layers" in err
    assert main(["evaluate", str(path), "--env", ENV]) == 2
    assert "missing layers" in _one_line_error(capsys)


def test_unreadable_checkpoint_exits_2(tmp_path: Path, capsys) -> None:
    bad = tmp_path / "finetuned.pt"
    bad.write_bytes(b"\x00garbage")
    assert main(["evaluate", "--checkpoint", str(bad), "--env", ENV]) == 2
    assert "cannot read checkpoint" in _one_line_error(capsys)


def test_unknown_env_exits_2(run_dir: Path, capsys) -> None:
    assert main(["finetune", str(run_dir), "--env", "haq_rl/LeNet5Sise-v0", "--no-progress"]) == 2
    assert "did you mean" in _one_line_error(capsys)
    assert main(["evaluate", "--uniform", "4", "--env", "haq_rl/Nope-v0"]) == 2
    _one_line_error(capsys)


@pytest.mark.parametrize("argv", [["evaluate"], ["evaluate", "p.json", "--uniform", "4"],
                                  ["finetune", "x", "--epochs", "0"], ["finetune", "x", "--lr", "-1"],
                                  ["finetune", "x", "--distill", "2"], ["finetune", "x", "--warmup", "0.9"],
                                  ["finetune", "x", "--temperature", "0"]])
def test_bad_arguments_exit_2(argv: list[str], capsys) -> None:
    assert main(argv) == 2
    _one_line_error(capsys)


def test_recipe_flags_map_onto_the_config() -> None:
    from haq_rl.cli import build_parser
    from haq_rl.commands.finetune import config_from_args
    from haq_rl.finetune import FinetuneConfig

    parser = build_parser()
    config = config_from_args(parser.parse_args(["finetune", "x", "--optimizer", "sgd", "--distill", "0.3",
                                                 "--fold-bn", "--no-zero-point", "--quantizer", "lsq"]))
    assert (config.optimizer, config.distill, config.fold_bn, config.zero_point) == ("sgd", 0.3, True, False)
    legacy = config_from_args(parser.parse_args(["finetune", "x", "--legacy-recipe", "--epochs", "3"]))
    assert legacy == FinetuneConfig.legacy(epochs=3)
