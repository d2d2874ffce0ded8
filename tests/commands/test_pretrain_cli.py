"""``haq-rl pretrain`` in-process: errors are one line with exit code 2; a tiny run works."""

from __future__ import annotations

import pytest

from haq_rl.cli import main
from haq_rl.pretrain import load_checkpoint


def test_unknown_model_exits_2_with_suggestion(capsys) -> None:
    assert main(["pretrain", "--model", "lenet", "--epochs", "1"]) == 2
    err = capsys.readouterr().err
    assert "did you mean 'lenet5'" in err and err.count("\n") == 1


def test_unknown_dataset_exits_2(capsys) -> None:
    assert main(["pretrain", "--model", "lenet5", "--dataset", "mnist6k"]) == 2
    assert "did you mean 'mnist5k'" in capsys.readouterr().err


@pytest.mark.parametrize("flags", [["--epochs", "0"], ["--lr", "-1"], ["--batch-size", "0"]])
def test_bad_values_exit_2(capsys, flags: list[str]) -> None:
    assert main(["pretrain", "--model", "lenet5", *flags]) == 2
    assert "error:" in capsys.readouterr().err


def test_bad_user_model_path_exits_2(capsys) -> None:
    assert main(["pretrain", "--model", "haq_no_such_module_xyz:make", "--epochs", "1"]) == 2
    assert "cannot import" in capsys.readouterr().err


def test_cuda_without_cuda_exits_2(capsys) -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("machine has CUDA")
    assert main(["pretrain", "--model", "lenet5", "--epochs", "1", "--device", "cuda"]) == 2
    assert "CUDA" in capsys.readouterr().err


def test_tiny_pretrain_writes_loadable_checkpoint(tmp_path, capsys) -> None:
    out = tmp_path / "sub" / "lenet.pt"
    code = main(["pretrain", "--model", "lenet5", "--dataset", "digits", "--epochs", "1",
                 "--out", str(out), "--no-progress"])
    assert code == 0
    printed = capsys.readouterr().out
    assert "test accuracy" in printed and str(out) in printed
    model, meta = load_checkpoint(out)
    assert (meta["model"], meta["dataset"], meta["epochs"]) == ("lenet5", "digits", 1)
    assert meta["input_size"] == 8 and 0.0 <= meta["test_accuracy"] <= 100.0
    assert sum(p.numel() for p in model.parameters()) > 0
