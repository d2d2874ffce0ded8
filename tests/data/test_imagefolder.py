"""Class-per-subfolder trees of PNG files written with Pillow by the test."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from haq_rl.data import load_dataset, make_splits
from haq_rl.errors import DataFormatError, MissingPathError

CLASSES = ("cat", "dog", "fish")


def write_tree(root: Path, per_class: int = 10, size: tuple[int, int] = (20, 12)) -> None:
    rng = np.random.default_rng(0)
    for label, name in enumerate(CLASSES):
        folder = root / name
        folder.mkdir(parents=True)
        for i in range(per_class):
            pixels = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
            pixels[..., 0] = label * 100  # red channel encodes the class
            Image.fromarray(pixels).save(folder / f"{i:03d}.png")
    # One grayscale image: must come back as RGB.
    Image.fromarray(np.full((8, 8), 50, np.uint8), mode="L").save(root / "cat" / "gray.png")


def test_load_imagefolder_default_size(tmp_path: Path) -> None:
    write_tree(tmp_path)
    ds = load_dataset("imagefolder", tmp_path)
    assert ds.images.shape == (31, 3, 32, 32) and ds.images.dtype == np.uint8
    assert ds.class_names == CLASSES and ds.num_classes == 3
    assert np.bincount(ds.labels).tolist() == [11, 10, 10]
    dog = ds.images[ds.labels == 1]
    assert np.all(dog[:, 0] == 100)  # resizing a constant channel keeps it constant
    assert ds.official_test_mask is None
    splits = make_splits(ds)
    assert sum(splits.sizes.values()) == 31 and len(splits.mean) == 3


def test_imagefolder_image_size(tmp_path: Path) -> None:
    write_tree(tmp_path, per_class=2)
    ds = load_dataset("imagefolder", tmp_path, image_size=16)
    assert ds.images.shape[1:] == (3, 16, 16)


def test_imagefolder_train_val_layout(tmp_path: Path) -> None:
    write_tree(tmp_path / "train", per_class=6)
    write_tree(tmp_path / "val", per_class=2)
    ds = load_dataset("imagefolder", tmp_path, image_size=8)
    assert ds.official_test_mask is not None and ds.official_test_mask.sum() == 7
    splits = make_splits(ds)
    assert splits.official_test and len(splits.test) == 7


def test_imagefolder_empty(tmp_path: Path) -> None:
    with pytest.raises(DataFormatError, match="empty imagefolder") as info:
        load_dataset("imagefolder", tmp_path)
    assert str(tmp_path) in str(info.value)


def test_imagefolder_class_dirs_without_images(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "notes.txt").write_text("no images here")
    with pytest.raises(DataFormatError, match="empty imagefolder"):
        load_dataset("imagefolder", tmp_path)


def test_imagefolder_unreadable_image(tmp_path: Path) -> None:
    write_tree(tmp_path, per_class=2)
    bad = tmp_path / "dog" / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\nnot really a png")
    with pytest.raises(DataFormatError, match="Pillow") as info:
        load_dataset("imagefolder", tmp_path)
    assert str(bad) in str(info.value)


def test_imagefolder_missing_root(tmp_path: Path) -> None:
    with pytest.raises(MissingPathError, match="class-per-subfolder") as info:
        load_dataset("imagefolder", tmp_path / "missing")
    assert str(tmp_path / "missing") in str(info.value)
