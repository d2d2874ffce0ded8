"""Reader for class-per-subfolder image trees (the torchvision ``ImageFolder`` layout).

``root/<class>/<image>``; or, ImageNet style, ``root/train/<class>/...`` with
``root/val/<class>/...`` (or ``root/test``), in which case the val/test tree becomes the
official test part.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from haq_rl.errors import DataFormatError, MissingPathError

logger = logging.getLogger(__name__)

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".ppm", ".pgm", ".tif", ".tiff", ".webp")
DEFAULT_IMAGE_SIZE = 32
_FORMAT = "class-per-subfolder image tree (root/<class>/<image>.png|jpg|...)"


def _class_dirs(root: Path) -> list[Path]:
    return sorted((p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")),
                  key=lambda p: p.name)  # fmt: skip


def _image_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)


def _read_image(path: Path, size: int) -> np.ndarray:
    """Open one image as RGB ``(3, size, size)`` uint8."""
    try:
        with Image.open(path) as img:
            rgb = img.convert("RGB")
            if rgb.size != (size, size):
                rgb = rgb.resize((size, size), Image.Resampling.BILINEAR)
            arr = np.asarray(rgb, dtype=np.uint8)
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        # Pillow raises SyntaxError for some broken headers (e.g. PNG chunks).
        raise DataFormatError(f"{path}: Pillow cannot read this image ({exc})") from exc
    return arr.transpose(2, 0, 1)


def _read_tree(root: Path, class_names: tuple[str, ...], size: int) -> tuple[np.ndarray, np.ndarray]:
    images: list[np.ndarray] = []
    labels: list[int] = []
    for label, name in enumerate(class_names):
        folder = root / name
        if not folder.is_dir():
            continue  # a val tree may lack a class; the label stays aligned with train's
        for file in _image_files(folder):
            images.append(_read_image(file, size))
            labels.append(label)
    if not images:
        raise DataFormatError(f"{root}: empty imagefolder, no images with extensions "
                              f"{'/'.join(IMAGE_EXTENSIONS)} in class subfolders ({_FORMAT})")  # fmt: skip
    return np.stack(images), np.asarray(labels, dtype=np.int64)


def load_imagefolder(
    root: Path, image_size: int = DEFAULT_IMAGE_SIZE
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, tuple[str, ...]]:
    """Load a tree: ``(images uint8 (N,3,S,S), labels, official_test_mask or None, class_names)``."""
    if not root.is_dir():
        raise MissingPathError(f"imagefolder root {root} does not exist (expected a {_FORMAT})")
    train_root, test_root = root, None
    if (root / "train").is_dir():
        for name in ("val", "test"):
            if (root / name).is_dir():
                train_root, test_root = root / "train", root / name
                break
    class_dirs = _class_dirs(train_root)
    if not class_dirs:
        raise DataFormatError(f"{train_root}: empty imagefolder, no class subfolders ({_FORMAT})")
    class_names = tuple(p.name for p in class_dirs)
    images, labels = _read_tree(train_root, class_names, image_size)
    mask = None
    if test_root is not None:
        extra = [p.name for p in _class_dirs(test_root) if p.name not in class_names]
        if extra:
            raise DataFormatError(f"{test_root}: classes {extra} are not in {train_root}")
        test_images, test_labels = _read_tree(test_root, class_names, image_size)
        mask = np.concatenate([np.zeros(len(labels), bool), np.ones(len(test_labels), bool)])
        images = np.concatenate([images, test_images])
        labels = np.concatenate([labels, test_labels])
        logger.info("imagefolder %s: using %s as the official test set", root, test_root.name)
    return images, labels, mask, class_names
