"""MNIST from the four standard IDX files in a local folder."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from haq_rl.errors import DataFormatError, MissingPathError

from .idx import IDX_IMAGES_MAGIC, IDX_LABELS_MAGIC, read_idx

logger = logging.getLogger(__name__)

MNIST_FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}


def _candidate_dirs(root: Path) -> tuple[Path, ...]:
    # torchvision keeps the same files under MNIST/raw; accept that layout too.
    return (root, root / "MNIST" / "raw", root / "raw")


def find_idx_file(root: Path, base: str) -> Path | None:
    """Return ``base`` or ``base.gz`` (also the ``train-images.idx3-ubyte`` spelling) under root."""
    spellings = (base, base.replace("-idx", ".idx"))
    for folder in _candidate_dirs(root):
        for name in spellings:
            for suffix in ("", ".gz"):
                path = folder / f"{name}{suffix}"
                if path.is_file():
                    return path
    return None


def _read_pair(root: Path, images_key: str, labels_key: str) -> tuple[np.ndarray, np.ndarray]:
    paths = {k: find_idx_file(root, MNIST_FILES[k]) for k in (images_key, labels_key)}
    missing = [MNIST_FILES[k] for k, p in paths.items() if p is None]
    if missing:
        raise MissingPathError(
            f"MNIST folder {root} lacks {', '.join(missing)} (IDX format, optionally .gz; "
            f"expected {', '.join(MNIST_FILES.values())})"
        )
    images = read_idx(paths[images_key], IDX_IMAGES_MAGIC)  # type: ignore[arg-type]
    labels = read_idx(paths[labels_key], IDX_LABELS_MAGIC)  # type: ignore[arg-type]
    if len(images) != len(labels):
        raise DataFormatError(
            f"{paths[labels_key]}: {len(labels)} labels for {len(images)} images in "
            f"{paths[images_key]}"
        )
    if labels.size and labels.max() > 9:
        raise DataFormatError(f"{paths[labels_key]}: MNIST labels must be in 0..9, found {labels.max()}")
    return images[:, None, :, :], labels.astype(np.int64)


def load_mnist_idx(root: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Load train (+ t10k when present) merged: ``(images (N,1,H,W), labels, official_test_mask)``."""
    if not root.is_dir():
        raise MissingPathError(
            f"MNIST folder {root} does not exist (expected IDX files "
            f"{', '.join(MNIST_FILES.values())}, optionally .gz)"
        )
    images, labels = _read_pair(root, "train_images", "train_labels")
    has_test = [find_idx_file(root, MNIST_FILES[k]) is not None for k in ("test_images", "test_labels")]
    if not any(has_test):
        # Some users keep only the training files; splits then carve a stratified test part.
        logger.warning("no t10k-* files in %s: MNIST test split will be drawn from train", root)
        return images, labels, None
    test_images, test_labels = _read_pair(root, "test_images", "test_labels")
    if test_images.shape[1:] != images.shape[1:]:
        raise DataFormatError(
            f"{root}: t10k images are {test_images.shape[2:]} but train images {images.shape[2:]}"
        )
    mask = np.concatenate([np.zeros(len(labels), bool), np.ones(len(test_labels), bool)])
    return np.concatenate([images, test_images]), np.concatenate([labels, test_labels]), mask
