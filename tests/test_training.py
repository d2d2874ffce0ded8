"""Training loop, evaluation, pretraining checkpoints and the pretrained cache."""

from __future__ import annotations

import pytest
import torch
from torch.utils.data import TensorDataset

import haq_rl.pretrain as pretrain_module
from haq_rl.checkpoint_io import atomic_torch_save
from haq_rl.data import make_loader
from haq_rl.errors import CheckpointError, ConfigError, MissingPathError, UnknownNameError
from haq_rl.models import build_model
from haq_rl.pretrain import (
    PretrainConfig,
    cached_checkpoint_path,
    default_epochs,
    get_pretrained,
    load_checkpoint,
    pretrain,
    read_checkpoint_meta,
)
from haq_rl.training import evaluate_accuracy, resolve_device, train_epochs

TINY = {"model": "lenet5", "epochs": 1}


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("HAQ_RL_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory):
    """A 1-epoch LeNet-5 checkpoint shared by the checkpoint tests of this module."""
    return pretrain(PretrainConfig(**TINY), out=tmp_path_factory.mktemp("ckpt") / "lenet.pt",
                    progress=False)


def test_resolve_device() -> None:
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type in {"cpu", "cuda"}
    with pytest.raises(ConfigError, match="unknown device"):
        resolve_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="CUDA is not available"):
            resolve_device("cuda")


def test_lenet_trains_one_epoch_on_mnist5k(mnist5k_splits) -> None:
    torch.manual_seed(0)
    model = build_model("lenet5")
    loader = make_loader(mnist5k_splits.search_train, batch_size=64, shuffle=True, seed=0)
    losses = train_epochs(model, loader, epochs=1, lr=0.05, progress=False)
    assert len(losses) == 1 and losses[0] < 2.0
    assert model.training
    # Weights come back in the default memory format after channels-last training.
    assert all(p.is_contiguous() for p in model.parameters())
    accuracy = evaluate_accuracy(model, make_loader(mnist5k_splits.test, batch_size=256))
    assert accuracy > 80.0
    assert model.training  # evaluate restores the mode it found


def test_evaluate_accuracy_counts_exactly() -> None:
    class Fixed(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x  # logits are the inputs themselves

    inputs = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 0.0]])
    labels = torch.tensor([0, 1, 1, 1])
    loader = make_loader(TensorDataset(inputs, labels), batch_size=3)
    assert evaluate_accuracy(Fixed(), loader) == pytest.approx(50.0)


def test_train_epochs_validates_arguments() -> None:
    model = build_model("lenet5")
    loader = make_loader(TensorDataset(torch.zeros(4, 1, 28, 28), torch.zeros(4, dtype=torch.long)))
    with pytest.raises(ConfigError, match="epochs"):
        train_epochs(model, loader, epochs=0, lr=0.1, progress=False)
    with pytest.raises(ConfigError, match="lr"):
        train_epochs(model, loader, epochs=1, lr=0.0, progress=False)


def test_pretrain_config_defaults_and_validation() -> None:
    config = PretrainConfig()
    assert (config.model, config.dataset, config.seed) == ("mobilenetv2", "mnist5k", 0)
    assert config.epochs == default_epochs("mobilenetv2") and config.lr > 0
    assert PretrainConfig(device="cpu") == PretrainConfig()  # device is not identity
    assert PretrainConfig().short_hash() != PretrainConfig(seed=1).short_hash()
    with pytest.raises(UnknownNameError, match="did you mean 'lenet5'"):
        PretrainConfig(model="lenet")
    with pytest.raises(UnknownNameError, match="dataset"):
        PretrainConfig(dataset="mnist6k")
    for bad in ({"epochs": 0}, {"lr": -1.0}, {"batch_size": 0}, {"seed": -1},
                {"width_mult": 0.0}, {"input_size": 0}):
        with pytest.raises(ConfigError):
            PretrainConfig(**bad)


def test_checkpoint_round_trip_with_weights_only(tiny_checkpoint) -> None:
    payload = torch.load(tiny_checkpoint, weights_only=True, map_location="cpu")
    assert payload["format_version"] == 1
    meta = payload["meta"]
    for key in ("model", "dataset", "num_classes", "in_channels", "input_size", "width_mult",
                "split_seed", "data_root", "epochs", "lr", "test_accuracy", "reward_accuracy",
                "wall_time_s", "haq_rl_version"):
        assert key in meta
    assert meta["test_accuracy"] > 80.0
    model, loaded_meta = load_checkpoint(tiny_checkpoint)
    from haq_rl.shipped_models import weights_sha256

    # Loading adds the digest of the weights it loaded (recorded in config.json).
    assert loaded_meta.pop("weights_sha256") == weights_sha256(model)
    assert loaded_meta == meta and not model.training
    for key, value in model.state_dict().items():
        assert torch.equal(value, payload["state_dict"][key])
    assert read_checkpoint_meta(tiny_checkpoint) == meta


def test_missing_checkpoint(tmp_path) -> None:
    with pytest.raises(MissingPathError, match="not found"):
        load_checkpoint(tmp_path / "nope.pt")


@pytest.mark.parametrize("content", [b"", b"not a checkpoint at all"])
def test_corrupt_checkpoint(tmp_path, content: bytes) -> None:
    path = tmp_path / "bad.pt"
    path.write_bytes(content)
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(path)
    assert str(path) in str(info.value) and "\n" not in str(info.value)


def test_truncated_and_foreign_checkpoints(tmp_path, tiny_checkpoint) -> None:
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(tiny_checkpoint.read_bytes()[:2000])
    with pytest.raises(CheckpointError, match="truncated.pt"):
        load_checkpoint(truncated)
    foreign = tmp_path / "foreign.pt"
    torch.save({"weights": torch.zeros(3)}, foreign)
    with pytest.raises(CheckpointError, match="not a haq-rl checkpoint"):
        load_checkpoint(foreign)
    wrong = tmp_path / "wrong.pt"
    payload = torch.load(tiny_checkpoint, weights_only=True)
    payload["meta"]["model"] = "resnet8"
    torch.save(payload, wrong)
    with pytest.raises(CheckpointError, match="does not fit model 'resnet8'"):
        load_checkpoint(wrong)


def test_get_pretrained_trains_once_then_reuses(cache, monkeypatch, tiny_checkpoint) -> None:
    config = PretrainConfig(**TINY)
    calls: list[PretrainConfig] = []

    def fake_pretrain(cfg, out=None, progress=True):
        # Stands in for training (covered by the other tests): writes a real checkpoint.
        calls.append(cfg)
        atomic_torch_save(torch.load(tiny_checkpoint, weights_only=True), out)
        return out

    monkeypatch.setattr(pretrain_module, "pretrain", fake_pretrain)
    first, meta = get_pretrained(config)
    path = cached_checkpoint_path(config)
    assert calls == [config] and path.parent == cache / "pretrained" and path.exists()
    assert not [p for p in path.parent.iterdir() if p.name.endswith(".tmp")]
    mtime = path.stat().st_mtime_ns
    second, meta2 = get_pretrained(config)
    assert len(calls) == 1 and path.stat().st_mtime_ns == mtime and meta == meta2
    for key, value in first.state_dict().items():
        assert torch.equal(value, second.state_dict()[key])
    assert cached_checkpoint_path(PretrainConfig(model="lenet5", epochs=2)) != path
    # A corrupt cache file is replaced by retraining instead of failing forever.
    path.write_bytes(b"garbage")
    get_pretrained(config)
    assert len(calls) == 2
    load_checkpoint(path)


def test_pretrain_is_deterministic(tmp_path) -> None:
    # digits (1,797 8x8 images) keeps this cheap; same seed -> bit-identical weights.
    config = PretrainConfig(model="lenet5", dataset="digits", epochs=1)
    first = pretrain(config, out=tmp_path / "first.pt", progress=False)
    again = pretrain(config, out=tmp_path / "again.pt", progress=False)
    a = torch.load(first, weights_only=True)["state_dict"]
    b = torch.load(again, weights_only=True)["state_dict"]
    assert all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.slow
def test_default_recipes_reach_acceptance(pretrained_mobilenetv2, pretrained_lenet5) -> None:
    assert pretrained_mobilenetv2[1]["test_accuracy"] >= 95.0
    assert pretrained_lenet5[1]["test_accuracy"] >= 93.0
