"""CIFAR-10 python-version batches written by the test itself in the official layout."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest

from haq_rl.data import CIFAR10_FOLDER, load_dataset, make_splits
from haq_rl.errors import DataFormatError, MissingPathError

PER_BATCH = 20
NAMES = [b"airplane", b"automobile", b"bird", b"cat", b"deer",
         b"dog", b"frog", b"horse", b"ship", b"truck"]  # fmt: skip


class _Evil:
    """Pickles to a call of os.system: the allow-list must refuse it."""

    def __reduce__(self) -> tuple:
        import os

        return (os.system, ("true",))


def _dump(path: Path, obj: object) -> None:
    with path.open("wb") as fh:
        pickle.dump(obj, fh, protocol=2)


def write_cifar(parent: Path, with_meta: bool = True) -> Path:
    folder = parent / CIFAR10_FOLDER
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        _dump(folder / name, {
            b"batch_label": name.encode(),
            b"labels": [int(v) for v in np.arange(PER_BATCH) % 10],
            b"data": rng.integers(0, 256, (PER_BATCH, 3072), dtype=np.uint8),
            b"filenames": [f"{i}.png".encode() for i in range(PER_BATCH)],
        })  # fmt: skip
    if with_meta:
        _dump(folder / "batches.meta", {b"label_names": NAMES, b"num_vis": 3072})
    return folder


@pytest.mark.parametrize("point_at_folder", [False, True])
def test_load_cifar10(tmp_path: Path, point_at_folder: bool) -> None:
    folder = write_cifar(tmp_path)
    ds = load_dataset("cifar10", folder if point_at_folder else tmp_path)
    assert ds.images.shape == (6 * PER_BATCH, 3, 32, 32) and ds.images.dtype == np.uint8
    assert ds.num_classes == 10 and ds.class_names[0] == "airplane"
    assert ds.official_test_mask is not None and ds.official_test_mask.sum() == PER_BATCH
    with (folder / "data_batch_1").open("rb") as fh:
        first = pickle.load(fh)
    # Channel-major rows: the first 1024 bytes are the red plane of image 0.
    assert np.array_equal(ds.images[0, 0].ravel(), first[b"data"][0, :1024])
    splits = make_splits(ds)
    assert splits.official_test and len(splits.test) == PER_BATCH
    assert (len(splits.search_train), len(splits.reward_val)) == (90, 10)
    assert len(splits.mean) == 3 and splits.input_shape == (3, 32, 32)


def test_cifar10_without_meta_uses_standard_names(tmp_path: Path) -> None:
    write_cifar(tmp_path, with_meta=False)
    assert load_dataset("cifar10", tmp_path).class_names[-1] == "truck"


def test_cifar10_missing_root(tmp_path: Path) -> None:
    with pytest.raises(MissingPathError, match="cifar-10-batches-py") as info:
        load_dataset("cifar10", tmp_path / "absent")
    assert str(tmp_path / "absent") in str(info.value)


def test_cifar10_missing_batch(tmp_path: Path) -> None:
    folder = write_cifar(tmp_path)
    (folder / "test_batch").unlink()
    with pytest.raises(MissingPathError, match="test_batch"):
        load_dataset("cifar10", tmp_path)


def test_cifar10_corrupt_pickle(tmp_path: Path) -> None:
    folder = write_cifar(tmp_path)
    (folder / "data_batch_3").write_bytes(b"\x80\x02garbage")
    with pytest.raises(DataFormatError, match="pickle") as info:
        load_dataset("cifar10", tmp_path)
    assert str(folder / "data_batch_3") in str(info.value)


def test_cifar10_truncated_pickle(tmp_path: Path) -> None:
    folder = write_cifar(tmp_path)
    path = folder / "data_batch_2"
    path.write_bytes(path.read_bytes()[:500])
    with pytest.raises(DataFormatError, match="data_batch_2"):
        load_dataset("cifar10", tmp_path)


def test_cifar10_bad_dict(tmp_path: Path) -> None:
    folder = write_cifar(tmp_path)
    _dump(folder / "data_batch_1", {b"pixels": np.zeros((2, 3072), np.uint8)})
    with pytest.raises(DataFormatError, match="b'data'") as info:
        load_dataset("cifar10", tmp_path)
    assert str(folder / "data_batch_1") in str(info.value)


def test_cifar10_bad_shape(tmp_path: Path) -> None:
    folder = write_cifar(tmp_path)
    _dump(folder / "test_batch", {b"data": np.zeros((2, 100), np.uint8), b"labels": [0, 1]})
    with pytest.raises(DataFormatError, match="3072"):
        load_dataset("cifar10", tmp_path)


def test_cifar10_refuses_code_in_pickle(tmp_path: Path) -> None:
    folder = write_cifar(tmp_path)
    _dump(folder / "data_batch_1", {b"data": _Evil(), b"labels": []})
    with pytest.raises(DataFormatError, match="not allowed"):
        load_dataset("cifar10", tmp_path)
