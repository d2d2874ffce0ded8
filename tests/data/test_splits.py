"""Splits on the real built-in datasets: sizes, balance, determinism, normalisation."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from haq_rl.data import (
    DataSplits,
    ImageDataset,
    SplitConfig,
    load_dataset,
    make_loader,
    make_splits,
)
from haq_rl.errors import ConfigError


@pytest.fixture(scope="module")
def mnist5k() -> ImageDataset:
    return load_dataset("mnist5k")


@pytest.fixture(scope="module")
def digits() -> ImageDataset:
    return load_dataset("digits")


@pytest.fixture(scope="module")
def mnist5k_splits(mnist5k: ImageDataset) -> DataSplits:
    return make_splits(mnist5k)


def test_mnist5k_dataset(mnist5k: ImageDataset) -> None:
    assert mnist5k.images.shape == (5000, 1, 28, 28)
    assert mnist5k.images.dtype == np.uint8
    assert mnist5k.labels.dtype == np.int64
    assert np.bincount(mnist5k.labels).tolist() == [500] * 10
    assert mnist5k.num_classes == 10
    assert mnist5k.official_test_mask is None


def test_mnist5k_default_sizes_and_balance(mnist5k: ImageDataset, mnist5k_splits: DataSplits) -> None:
    s = mnist5k_splits
    assert (len(s.search_train), len(s.reward_val), len(s.test)) == (3500, 500, 1000)
    for idx, per_class in ((s.train_indices, 350), (s.reward_indices, 50), (s.test_indices, 100)):
        assert np.bincount(mnist5k.labels[idx], minlength=10).tolist() == [per_class] * 10
    assert s.input_shape == (1, 28, 28)
    assert s.num_classes == 10
    assert s.dataset_name == "mnist5k"
    assert s.config == SplitConfig()


def test_split_tensors_match_indices(mnist5k: ImageDataset, mnist5k_splits: DataSplits) -> None:
    images, labels = mnist5k_splits.reward_val.tensors
    assert images.dtype == torch.float32 and labels.dtype == torch.int64
    assert images.shape == (500, 1, 28, 28)
    assert torch.equal(labels, torch.from_numpy(mnist5k.labels[mnist5k_splits.reward_indices]))
    # Undo the normalisation and compare with the raw bytes.
    mean, std = mnist5k_splits.mean[0], mnist5k_splits.std[0]
    raw = (images * std + mean) * 255.0
    expected = torch.from_numpy(mnist5k.images[mnist5k_splits.reward_indices]).float()
    assert torch.allclose(raw, expected, atol=1e-2)


def test_digits_sizes_and_balance(digits: ImageDataset) -> None:
    assert digits.images.shape == (1797, 1, 8, 8)
    assert digits.images.dtype == np.uint8 and digits.images.max() == 255
    s = make_splits(digits)
    assert len(s.train_indices) + len(s.reward_indices) + len(s.test_indices) == 1797
    counts = np.bincount(digits.labels, minlength=10)
    for idx, fraction in ((s.reward_indices, 0.1), (s.test_indices, 0.2)):
        got = np.bincount(digits.labels[idx], minlength=10)
        assert np.all(np.abs(got - counts * fraction) <= 1), (got, counts * fraction)
    assert s.input_shape == (1, 8, 8)


def test_no_overlap_and_full_cover(mnist5k_splits: DataSplits) -> None:
    s = mnist5k_splits
    train, reward, test = (set(a.tolist()) for a in (s.train_indices, s.reward_indices, s.test_indices))
    assert not (train & reward) and not (train & test) and not (reward & test)
    assert train | reward | test == set(range(5000))


def test_same_seed_same_splits_different_seed_different(mnist5k: ImageDataset) -> None:
    a = make_splits(mnist5k, SplitConfig(seed=3))
    b = make_splits(mnist5k, SplitConfig(seed=3))
    c = make_splits(mnist5k, SplitConfig(seed=4))
    for name in ("train_indices", "reward_indices", "test_indices"):
        assert np.array_equal(getattr(a, name), getattr(b, name))
    assert torch.equal(a.search_train.tensors[0], b.search_train.tensors[0])
    assert a.mean == b.mean and a.std == b.std
    assert not np.array_equal(a.reward_indices, c.reward_indices)
    assert not np.array_equal(a.test_indices, c.test_indices)


def test_normalisation_from_train_only(mnist5k: ImageDataset, mnist5k_splits: DataSplits) -> None:
    s = mnist5k_splits
    train = s.search_train.tensors[0].double()
    assert abs(train.mean().item()) < 1e-4
    assert abs(train.std(unbiased=False).item() - 1.0) < 1e-4
    raw_train = mnist5k.images[s.train_indices].astype(np.float64) / 255.0
    assert s.mean[0] == pytest.approx(raw_train.mean(), abs=1e-9)
    assert s.std[0] == pytest.approx(raw_train.std(), abs=1e-9)
    # Stats of the whole dataset differ from the train-only ones: proves nothing leaked.
    raw_all = mnist5k.images.astype(np.float64) / 255.0
    assert s.mean[0] != pytest.approx(raw_all.mean(), abs=1e-9)


def test_custom_fractions(digits: ImageDataset) -> None:
    s = make_splits(digits, SplitConfig(seed=1, reward_fraction=0.25, test_fraction=0.25))
    assert len(s.reward_indices) == pytest.approx(1797 * 0.25, abs=10)
    assert len(s.test_indices) == pytest.approx(1797 * 0.25, abs=10)


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"reward_fraction": 0.0}, "reward_fraction"),
        ({"reward_fraction": 1.5}, "1.5"),
        ({"test_fraction": -0.1}, "test_fraction"),
        ({"test_fraction": 1.0}, "(0, 1)"),
        ({"reward_fraction": 0.5, "test_fraction": 0.5}, "< 1"),
        ({"seed": -1}, "seed"),
        ({"seed": 1.5}, "seed"),
        ({"reward_fraction": "0.1"}, "'0.1'"),
    ],
)
def test_split_config_rejects_bad_values(kwargs: dict, needle: str) -> None:
    with pytest.raises(ConfigError, match="SplitConfig") as info:
        SplitConfig(**kwargs)
    assert needle in str(info.value)
    assert isinstance(info.value, ValueError)


def test_split_config_is_frozen() -> None:
    with pytest.raises(AttributeError):
        SplitConfig().seed = 1  # type: ignore[misc]


def test_too_small_dataset_raises() -> None:
    tiny = ImageDataset(
        name="tiny",
        images=np.zeros((2, 1, 4, 4), np.uint8),
        labels=np.array([0, 1], dtype=np.int64),
        num_classes=2,
    )
    with pytest.raises(ConfigError, match="too small"):
        make_splits(tiny)


def test_make_loader_batches_and_seeded_shuffle(mnist5k_splits: DataSplits) -> None:
    ds = mnist5k_splits.reward_val
    plain = make_loader(ds, batch_size=128)
    batches = list(plain)
    assert [len(b[1]) for b in batches] == [128, 128, 128, 116]
    assert torch.equal(batches[0][1], ds.tensors[1][:128])

    def order(seed: int) -> torch.Tensor:
        return torch.cat([y for _, y in make_loader(ds, batch_size=100, shuffle=True, seed=seed)])

    def first_images(seed: int) -> torch.Tensor:
        return next(iter(make_loader(ds, batch_size=100, shuffle=True, seed=seed)))[0]

    assert torch.equal(first_images(0), first_images(0))
    assert not torch.equal(first_images(0), first_images(1))
    assert sorted(order(0).tolist()) == sorted(ds.tensors[1].tolist())
    with pytest.raises(ConfigError, match="batch_size"):
        make_loader(ds, batch_size=0)


def test_image_size_resizes_builtin() -> None:
    d = load_dataset("digits", image_size=16)
    assert d.images.shape == (1797, 1, 16, 16) and d.images.dtype == np.uint8
    s = make_splits(d)
    assert s.input_shape == (1, 16, 16)
    assert s.test.tensors[0].shape[1:] == (1, 16, 16)
