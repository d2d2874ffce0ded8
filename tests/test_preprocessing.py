"""Preprocessing is part of the task (issue 35, item 1).

A plain-torch CNN trained the obvious way (pixels / 255, no mean/std) scores near chance
under haq-rl's default normalisation (search_train's mean/std): the search refuses with one
line that names the causes and ``--set normalize=none``; with that setting it searches, and
config.json, finetuned.pt and the ONNX metadata record what was done to the pixels.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from haq_rl.cli import main
from haq_rl.data import load_dataset, make_splits
from haq_rl.errors import ConfigError
from haq_rl.pretrain import PretrainConfig
from haq_rl.task.spec import resolve_spec

MODEL = "tests.user_models:plain_cnn"
# Pinned, not the default env: the CNN is trained on mnist5k, which this env uses.
ENV = "haq_rl/MobileNetV2Edge-v1"
SEARCH = ["search", ENV, "--model", MODEL, "--method", "random", "--episodes", "2",
          "--budget", "0.9", "--no-progress"]


def _train_on_pixels_over_255(path: Path) -> None:
    """Two epochs on mnist5k in plain torch with ToTensor-style inputs: pixels / 255, nothing else
    (about 40 % on them, near chance under haq-rl's default normalisation)."""

    from tests.user_models import plain_cnn, train_on_mnist5k

    model = train_on_mnist5k(plain_cnn, lambda params: torch.optim.Adam(params, lr=0.01), epochs=2,
                             standardize=False)
    torch.save(model.state_dict(), path)


@pytest.fixture(scope="module")
def weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("own") / "cnn.pt"
    _train_on_pixels_over_255(path)
    return path


def test_normalize_is_a_checked_spec_field() -> None:
    assert resolve_spec(ENV).normalize == "dataset"  # the default: shipped envs unchanged
    assert resolve_spec(ENV, normalize="none").normalize == "none"
    assert resolve_spec(ENV, normalize="0.1307/0.3081").to_dict()["normalize"] == "0.1307/0.3081"
    for bad in ("zscore", "0.5", "0.5/0", "0.5,0.5/0.2", "a/b"):
        with pytest.raises(ConfigError, match="normalize"):
            resolve_spec(ENV, normalize=bad)


def test_make_splits_normalize_none_and_explicit() -> None:
    dataset = load_dataset("digits")
    raw = make_splits(dataset, normalize="none")
    assert raw.mean == (0.0,) and raw.std == (1.0,) and raw.normalize == "none"
    first = raw.train_indices[0]
    scale = 255.0 if dataset.images.dtype == np.uint8 else 1.0
    expected = torch.from_numpy(dataset.images[first].astype(np.float32) / scale)
    assert torch.allclose(raw.search_train.tensors[0][0], expected)
    fixed = make_splits(dataset, normalize="0.5/0.25")
    assert torch.allclose(fixed.search_train.tensors[0][0], (expected - 0.5) / 0.25)
    default = make_splits(dataset)
    assert default.normalize == "dataset" and default.mean != (0.0,)
    with pytest.raises(ConfigError, match="channel"):
        make_splits(dataset, normalize="0.5,0.5,0.5/0.2,0.2,0.2")  # digits are grayscale


def test_default_normalisation_keeps_pretrained_identity() -> None:
    """Every cached and shipped model keeps its name; other pixels are another model."""
    base = PretrainConfig(model="lenet5")
    assert "normalize" not in base.identity()
    assert PretrainConfig(model="lenet5", normalize="dataset").short_hash() == base.short_hash()
    assert PretrainConfig(model="lenet5", normalize="none").short_hash() != base.short_hash()


@pytest.mark.slow  # about 30 s: training, two searches, a fine-tune and an export
def test_model_trained_on_pixels_over_255_is_refused_then_searched_with_normalize_none(
        weights: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main([*SEARCH, "--weights", str(weights), "--out", str(tmp_path / "refused")]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1, lines
    line = lines[0]
    assert "near chance" in line and "--set normalize=none" in line
    assert "labels" in line and "weights" in line
    assert not (tmp_path / "refused").exists()  # stopped before any file

    run = tmp_path / "run"
    assert main([*SEARCH, "--weights", str(weights), "--out", str(run), "--set", "normalize=none"]) == 0
    config = json.loads((run / "config.json").read_text())
    assert config["env"]["normalize"] == "none"
    assert config["float_accuracy"] > 30  # fed the way it was trained: clear of chance (19 %)

    finetuned = tmp_path / "ft"
    assert main(["finetune", str(run), "--epochs", "1", "--epoch-images", "256", "--no-compare", "--model", MODEL, "--out", str(finetuned),
                 "--no-progress"]) == 0
    (checkpoint,) = finetuned.rglob("finetuned.pt")
    meta = torch.load(checkpoint, weights_only=True)["meta"]
    assert meta["preprocessing"]["normalize"] == "none"
    assert meta["preprocessing"]["mean"] == [0.0] and meta["preprocessing"]["std"] == [1.0]
    assert meta["preprocessing"]["input_shape"] == [1, 28, 28]

    onnx = pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    out = tmp_path / "model.onnx"
    assert main(["export", str(run), "--model", MODEL, "--out", str(out)]) == 0
    props = {prop.key: prop.value for prop in onnx.load(str(out)).metadata_props}
    recorded = json.loads(props["preprocessing"])
    assert recorded["normalize"] == "none" and recorded["formula"] == "(pixels / 255 - mean) / std"
