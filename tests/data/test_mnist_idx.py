"""MNIST IDX files written by the test itself in the standard format (plain and .gz)."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest

from haq_rl.data import MNIST_FILES, load_dataset, make_splits, read_idx
from haq_rl.errors import DataFormatError, MissingPathError

N_TRAIN, N_TEST = 40, 20


def _idx_bytes(array: np.ndarray, type_code: int = 0x08) -> bytes:
    """Standard IDX: 0x00 0x00 <type> <ndim>, big-endian uint32 dims, then the data."""
    header = bytes([0, 0, type_code, array.ndim]) + np.asarray(array.shape, dtype=">u4").tobytes()
    return header + array.astype(np.uint8).tobytes()


def _write(path: Path, payload: bytes, gz: bool) -> None:
    if gz:
        with gzip.open(path.with_name(path.name + ".gz"), "wb") as fh:
            fh.write(payload)
    else:
        path.write_bytes(payload)


def write_mnist(root: Path, gz: bool = False, with_test: bool = True) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    arrays = {
        "train_images": rng.integers(0, 256, (N_TRAIN, 28, 28), dtype=np.uint8),
        "train_labels": np.arange(N_TRAIN, dtype=np.uint8) % 10,
        "test_images": rng.integers(0, 256, (N_TEST, 28, 28), dtype=np.uint8),
        "test_labels": np.arange(N_TEST, dtype=np.uint8) % 10,
    }
    root.mkdir(parents=True, exist_ok=True)
    for key, array in arrays.items():
        if key.startswith("test") and not with_test:
            continue
        _write(root / MNIST_FILES[key], _idx_bytes(array), gz)
    return arrays


@pytest.mark.parametrize("gz", [False, True])
def test_load_mnist_idx(tmp_path: Path, gz: bool) -> None:
    arrays = write_mnist(tmp_path, gz=gz)
    ds = load_dataset("mnist", tmp_path)
    assert ds.name == "mnist"
    assert ds.images.shape == (N_TRAIN + N_TEST, 1, 28, 28) and ds.images.dtype == np.uint8
    assert np.array_equal(ds.images[:N_TRAIN, 0], arrays["train_images"])
    assert np.array_equal(ds.images[N_TRAIN:, 0], arrays["test_images"])
    assert ds.labels.dtype == np.int64
    assert ds.official_test_mask is not None
    assert ds.official_test_mask.sum() == N_TEST and ds.official_test_mask[N_TRAIN:].all()


def test_mnist_official_test_becomes_test_split(tmp_path: Path) -> None:
    write_mnist(tmp_path)
    ds = load_dataset("mnist", tmp_path)
    splits = make_splits(ds)
    assert splits.official_test
    assert splits.test_indices.tolist() == list(range(N_TRAIN, N_TRAIN + N_TEST))
    assert len(splits.reward_indices) == 4  # 10% of each class of the 40 training images
    assert len(splits.train_indices) == 36


def test_mnist_without_t10k_draws_test_from_train(tmp_path: Path) -> None:
    write_mnist(tmp_path, with_test=False)
    ds = load_dataset("mnist", tmp_path)
    assert ds.official_test_mask is None and len(ds) == N_TRAIN
    splits = make_splits(ds)
    assert (len(splits.test_indices), len(splits.reward_indices)) == (8, 4)  # 20% and 10% of 40


def test_mnist_torchvision_layout_and_resize(tmp_path: Path) -> None:
    write_mnist(tmp_path / "MNIST" / "raw", gz=True)
    ds = load_dataset("mnist", tmp_path, image_size=32)
    assert ds.images.shape == (N_TRAIN + N_TEST, 1, 32, 32) and ds.images.dtype == np.uint8


def test_mnist_root_missing(tmp_path: Path) -> None:
    missing = tmp_path / "nope"
    with pytest.raises(MissingPathError, match="nope") as info:
        load_dataset("mnist", missing)
    assert "train-images-idx3-ubyte" in str(info.value)


def test_mnist_file_missing(tmp_path: Path) -> None:
    write_mnist(tmp_path)
    (tmp_path / MNIST_FILES["train_labels"]).unlink()
    with pytest.raises(MissingPathError, match="train-labels-idx1-ubyte") as info:
        load_dataset("mnist", tmp_path)
    assert str(tmp_path) in str(info.value)


def test_mnist_wrong_magic(tmp_path: Path) -> None:
    write_mnist(tmp_path)
    path = tmp_path / MNIST_FILES["train_images"]
    path.write_bytes(b"\x12\x34\x08\x03" + path.read_bytes()[4:])
    with pytest.raises(DataFormatError, match="magic") as info:
        load_dataset("mnist", tmp_path)
    assert str(path) in str(info.value)


def test_mnist_swapped_files_caught_by_magic(tmp_path: Path) -> None:
    arrays = write_mnist(tmp_path)
    path = tmp_path / MNIST_FILES["train_labels"]
    path.write_bytes(_idx_bytes(arrays["train_images"]))  # images where labels belong
    with pytest.raises(DataFormatError, match="0x00000801"):
        load_dataset("mnist", tmp_path)


@pytest.mark.parametrize("gz", [False, True])
def test_mnist_truncated(tmp_path: Path, gz: bool) -> None:
    arrays = write_mnist(tmp_path, gz=gz)
    path = tmp_path / (MNIST_FILES["test_images"] + (".gz" if gz else ""))
    _write(tmp_path / MNIST_FILES["test_images"], _idx_bytes(arrays["test_images"])[:-100], gz)
    with pytest.raises(DataFormatError, match="truncated") as info:
        load_dataset("mnist", tmp_path)
    assert str(path) in str(info.value)


def test_corrupt_gzip(tmp_path: Path) -> None:
    write_mnist(tmp_path, gz=True)
    path = tmp_path / (MNIST_FILES["train_images"] + ".gz")
    path.write_bytes(b"this is not gzip")
    with pytest.raises(DataFormatError, match="gzip") as info:
        load_dataset("mnist", tmp_path)
    assert str(path) in str(info.value)


def test_label_count_mismatch(tmp_path: Path) -> None:
    write_mnist(tmp_path)
    (tmp_path / MNIST_FILES["train_labels"]).write_bytes(
        _idx_bytes(np.zeros(N_TRAIN - 1, dtype=np.uint8))
    )
    with pytest.raises(DataFormatError, match="labels"):
        load_dataset("mnist", tmp_path)


def test_read_idx_other_dtype(tmp_path: Path) -> None:
    array = np.arange(6, dtype=">i4").reshape(2, 3)
    path = tmp_path / "x.idx"
    path.write_bytes(bytes([0, 0, 0x0C, 2]) + np.asarray((2, 3), ">u4").tobytes() + array.tobytes())
    out = read_idx(path)
    assert out.dtype == np.int32 and out.tolist() == [[0, 1, 2], [3, 4, 5]]
