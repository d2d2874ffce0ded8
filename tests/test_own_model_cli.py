"""The practitioner's own model on the command line (issue 35, items 2-4).

A plain-PyTorch CNN in a package of the user's folder, trained with plain torch: its module
loads from the folder haq-rl is started in, every record names it (not the env whose data
it borrows), and evaluate, export and finetune take ``--model`` / ``--weights`` for a bare
policy JSON of it.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from haq_rl.cli import main
from haq_rl.fileio import file_sha256
from tests.user_models import train_on_mnist5k

PACKAGE = "haq35_own"
MODEL = f"{PACKAGE}.nets:make"
ENV = "haq_rl/MobileNetV2Edge-v1"  # the mnist5k env the test model was trained for

NETS = textwrap.dedent('''
    """The user's own network: plain torch, nothing from haq-rl."""
    from torch import nn


    def make(num_classes=10, in_channels=1):
        return nn.Sequential(
            nn.Conv2d(in_channels, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Flatten(), nn.Linear(16 * 7 * 7, num_classes))
''')


def _write_package(folder: Path, name: str) -> None:
    (folder / name).mkdir(parents=True)
    (folder / name / "__init__.py").write_text("")
    (folder / name / "nets.py").write_text(NETS)


def _forget(name: str) -> None:
    for module in [m for m in sys.modules if m == name or m.startswith(f"{name}.")]:
        del sys.modules[module]


def _train(folder: Path) -> Path:
    """One epoch on mnist5k in plain torch (a few seconds): weights the search can use."""

    sys.path.insert(0, str(folder))
    try:
        from haq35_own.nets import make  # type: ignore[import-not-found]
    finally:
        sys.path.remove(str(folder))
    model = train_on_mnist5k(make, lambda params: torch.optim.SGD(params, lr=0.05, momentum=0.9))
    path = folder / "cnn.pt"
    torch.save(model.state_dict(), path)
    return path


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Path]]:
    """The user's folder (package + weights) and a search run there under the default name."""
    folder = tmp_path_factory.mktemp("project")
    _write_package(folder, PACKAGE)
    weights = _train(folder)
    _forget(PACKAGE)
    torch.set_num_threads(1)
    before = os.getcwd()
    os.chdir(folder)
    try:
        assert main(["search", "haq_rl/MobileNetV2Edge-v1", "--model", MODEL, "--weights", "cnn.pt", "--method", "random",
                     "--episodes", "3", "--budget", "0.9", "--no-progress"]) == 0
    finally:
        os.chdir(before)
    (run,) = (folder / "runs").iterdir()
    yield {"folder": folder, "weights": weights, "run": run}
    _forget(PACKAGE)


def _one_line_error(capsys: pytest.CaptureFixture[str], argv: list[str]) -> str:
    assert main(argv) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1, lines
    return lines[0]


# ----------------------------------------------------------------- item 2: modules from the cwd
def test_model_module_loads_from_the_current_folder(tmp_path, monkeypatch, capsys) -> None:
    _write_package(tmp_path, "haq35_here")
    monkeypatch.chdir(tmp_path)
    try:
        assert main(["profile", "--model", "haq35_here.nets:make", "--input-size", "28", "--hw", "bismo-edge"]) == 0
        assert "haq35_here.nets:make at 1x28x28" in capsys.readouterr().out
        # The folder was searched for that import only: sys.path is as it was.
        assert str(tmp_path) not in sys.path and str(tmp_path.resolve()) not in sys.path
    finally:
        _forget("haq35_here")


def test_missing_module_names_the_folder_searched(tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.chdir(tmp_path)
    message = _one_line_error(capsys, ["profile", "--model", "haq35_nowhere.nets:make", "--input-size", "28",
                                       "--hw", "bismo-edge"])
    assert "'haq35_nowhere'" in message and str(tmp_path.resolve()) in message and "PYTHONPATH" in message


def test_a_module_that_imports_a_missing_dependency_says_so(tmp_path, monkeypatch, capsys) -> None:
    (tmp_path / "haq35_deps.py").write_text("import haq35_not_installed\n")
    monkeypatch.chdir(tmp_path)
    message = _one_line_error(capsys, ["profile", "--model", "haq35_deps:make", "--input-size", "28",
                                       "--hw", "bismo-edge"])
    assert "failed" in message and "haq35_not_installed" in message
    _forget("haq35_deps")


# ----------------------------------------------------------------- item 3: labelled as what it is
def test_run_directory_and_policy_name_the_users_model(project) -> None:
    digest = file_sha256(project["weights"])
    assert project["run"].name == f"nets.make-{digest[:8]}-random-s0"
    policy = json.loads((project["run"] / "best_policy.json").read_text())
    assert policy["label"] == f"{MODEL}, weights cnn.pt sha256:{digest[:8]}"
    assert policy["weights_sha256"] == digest and policy["model"] == MODEL


def test_finetune_header_and_report_name_the_users_model(project, tmp_path, capsys) -> None:
    run = shutil.copytree(project["run"], tmp_path / "run")
    assert main(["finetune", str(run), "--model", MODEL, "--epochs", "0", "--no-compare", "--no-progress"]) == 0
    header = capsys.readouterr().out.splitlines()[0]
    assert header.startswith(f"{MODEL}, weights cnn.pt sha256:") and "MobileNetV2" not in header
    assert json.loads((run / "metrics.json").read_text())["label"].startswith(MODEL)
    assert main(["evaluate", "--checkpoint", str(run / "finetuned.pt"), "--model", MODEL]) == 0
    assert capsys.readouterr().out.startswith(f"{MODEL}, weights cnn.pt sha256:")
    assert main(["report", str(run)]) == 0
    text = (run / "report.md").read_text()
    assert f"| model | {MODEL}, weights cnn.pt sha256:" in text
    assert "| env |" not in text and f"| data and hardware settings of | {ENV} |" in text
    from haq_rl import report

    assert report.best_table([run])["model"].iloc[0].startswith(f"{MODEL}, weights cnn.pt sha256:")


# ----------------------------------------------------------------- item 4: --model / --weights
@pytest.fixture
def bare_policy(project, tmp_path) -> Path:
    """best_policy.json alone, as a user mails it around (no config.json beside it)."""
    (tmp_path / "bare").mkdir()
    return Path(shutil.copy(project["run"] / "best_policy.json", tmp_path / "bare" / "policy.json"))


def test_bare_policy_of_own_model_asks_for_model_and_weights(project, bare_policy, capsys) -> None:
    message = _one_line_error(capsys, ["finetune", str(bare_policy), "--epochs", "0", "--no-progress"])
    assert f"--model {MODEL}" in message and "mobilenetv2" in message
    message = _one_line_error(capsys, ["evaluate", str(bare_policy), "--model", MODEL])
    assert "--weights" in message


def test_finetune_and_evaluate_a_bare_policy_with_model_and_weights(project, bare_policy, capsys) -> None:
    flags = ["--model", MODEL, "--weights", str(project["weights"])]
    assert main(["finetune", str(bare_policy), "--epochs", "0", "--no-compare", "--no-progress", *flags]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0].startswith(f"{MODEL}, weights cnn.pt")
    assert "No row was fine-tuned (0 epochs)" in out
    assert main(["evaluate", str(bare_policy), "--json", *flags]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["model"] == MODEL and result["label"].startswith(MODEL) and result["accuracy"] > 50
    assert main(["evaluate", str(bare_policy), *flags]) == 0
    assert capsys.readouterr().out.startswith(f"{MODEL}, weights cnn.pt")


def test_export_a_bare_policy_with_model_and_weights(project, bare_policy, capsys) -> None:
    pytest.importorskip("onnxruntime")
    out = bare_policy.parent / "own.onnx"
    assert main(["export", str(bare_policy), "--out", str(out), "--model", MODEL,
                 "--weights", str(project["weights"])]) == 0
    assert out.is_file() and "test accuracy: onnxruntime" in capsys.readouterr().out


def test_resume_takes_the_runs_own_model_flag(project, tmp_path, monkeypatch) -> None:
    """The console script finds the module again through --model; another model is refused."""
    run = shutil.copytree(project["run"], tmp_path / "run")
    monkeypatch.chdir(project["folder"])
    _forget(PACKAGE)
    assert main(["search", "--resume", str(run), "--episodes", "4", "--model", MODEL, "--no-progress"]) == 0
    assert len((run / "episodes.csv").read_text().splitlines()) == 1 + 4
    assert main(["search", "--resume", str(run), "--episodes", "5", "--model", "lenet5", "--no-progress"]) == 2


def test_supernet_takes_model_and_weights(tmp_path, monkeypatch, capsys) -> None:
    """supernet builds a model too: it takes --model (imported from the current folder)."""
    monkeypatch.chdir(tmp_path)
    message = _one_line_error(capsys, ["supernet", "--model", "haq35_nowhere.nets:make", "--weights",
                                       str(tmp_path / "w.pt"), "--epochs", "1"])
    assert "'haq35_nowhere'" in message and str(tmp_path.resolve()) in message


@pytest.mark.slow
def test_supernet_of_the_users_model(project, tmp_path, monkeypatch, capsys) -> None:
    """About 10 s: one epoch of the user's CNN's supernet, labelled with the model and weights."""
    monkeypatch.setenv("HAQ_RL_CACHE", str(tmp_path / "cache"))
    monkeypatch.chdir(project["folder"])
    _forget(PACKAGE)
    assert main(["supernet", "--model", MODEL, "--weights", "cnn.pt", "--epochs", "1", "--no-progress"]) == 0
    assert capsys.readouterr().out.startswith(f"supernet of {MODEL}, weights cnn.pt sha256:")


def test_zoo_model_policy_is_checked_against_its_own_model(tmp_path, monkeypatch, capsys) -> None:
    """A policy of `search --model lenet5` on the default env, alone: a zoo name runs no code
    of the file's choosing, so evaluate takes it from the policy instead of MobileNetV2."""
    monkeypatch.chdir(tmp_path)
    assert main(["search", "haq_rl/MobileNetV2Edge-v1", "--model", "lenet5", "--method", "random", "--episodes", "2", "--budget", "0.9",
                 "--no-progress"]) == 0
    run = tmp_path / "runs" / "lenet5-random-s0"
    assert json.loads((run / "best_policy.json").read_text())["label"] == "lenet5"
    (tmp_path / "bare").mkdir()
    bare = shutil.copy(run / "best_policy.json", tmp_path / "bare" / "policy.json")
    capsys.readouterr()
    assert main(["evaluate", str(bare)]) == 0
    assert capsys.readouterr().out.startswith("lenet5 (on mnist5k, bismo-edge, post-training quantization)")
    # Named on purpose, another env's model is not swapped in silently.
    assert "searched on model 'lenet5'" in _one_line_error(
        capsys, ["finetune", str(bare), "--env", "haq_rl/MobileNetV2Edge-v1", "--epochs", "0", "--no-progress"])
