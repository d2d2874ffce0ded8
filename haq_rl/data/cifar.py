"""Reader for CIFAR-10 in its official "python version" (``cifar-10-batches-py``).

The official distribution is a set of pickled dicts written by Python 2, so reading it
needs ``pickle`` with ``encoding="bytes"``: that is the dataset's own format, not a
choice of ours. Pickle can run code, so we unpickle with an allow-list that admits only
the few globals a numpy array needs; anything else is rejected as a format error.
"""

from __future__ import annotations

import codecs
import logging
import pickle
from pathlib import Path
from typing import Any

import numpy as np

from haq_rl.errors import DataFormatError, MissingPathError

logger = logging.getLogger(__name__)

CIFAR10_FOLDER = "cifar-10-batches-py"
CIFAR10_TRAIN_FILES = tuple(f"data_batch_{i}" for i in range(1, 6))
CIFAR10_TEST_FILE = "test_batch"
CIFAR10_META_FILE = "batches.meta"
CIFAR10_CLASSES = (
    "airplane", "automobile", "bird", "cat", "deer",
    "dog", "frog", "horse", "ship", "truck",
)  # fmt: skip
_IMAGE_BYTES = 3 * 32 * 32

# The only globals a pickled numpy array (from numpy 1.x or 2.x, Python 2 or 3) refers to.
_ALLOWED_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("_codecs", "encode"),
}


class _ArrayOnlyUnpickler(pickle.Unpickler):
    """Unpickler that resolves only the globals needed to rebuild numpy arrays."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) == ("_codecs", "encode"):
            return codecs.encode
        if (module, name) in _ALLOWED_GLOBALS:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"global {module}.{name} is not allowed in a CIFAR batch")


def load_pickle_dict(path: Path) -> dict[bytes, Any]:
    """Unpickle one CIFAR batch file into a dict with ``bytes`` keys."""
    try:
        with path.open("rb") as fh:
            obj = _ArrayOnlyUnpickler(fh, encoding="bytes").load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError,
            ImportError, IndexError, KeyError) as exc:  # fmt: skip
        raise DataFormatError(f"{path}: not a readable CIFAR-10 python pickle batch ({exc})") from exc
    if not isinstance(obj, dict):
        raise DataFormatError(
            f"{path}: CIFAR-10 batch must unpickle to a dict, got {type(obj).__name__}"
        )
    # Batches pickled by Python 3 with str keys are accepted too.
    return {k.encode() if isinstance(k, str) else k: v for k, v in obj.items()}


def read_cifar_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Return ``(images uint8 (N, 3, 32, 32), labels int64 (N,))`` of one batch file."""
    batch = load_pickle_dict(path)
    if b"data" not in batch or b"labels" not in batch:
        raise DataFormatError(
            f"{path}: CIFAR-10 batch dict needs keys b'data' and b'labels', "
            f"found {sorted(batch)!r}"
        )
    try:
        data = np.asarray(batch[b"data"])
        labels = np.asarray(batch[b"labels"], dtype=np.int64)
    except (TypeError, ValueError) as exc:
        raise DataFormatError(f"{path}: CIFAR-10 b'data'/b'labels' are not arrays ({exc})") from exc
    if data.ndim != 2 or data.shape[1] != _IMAGE_BYTES or data.dtype != np.uint8:
        raise DataFormatError(
            f"{path}: CIFAR-10 b'data' must be uint8 of shape (N, {_IMAGE_BYTES}), "
            f"got {data.dtype} {data.shape}"
        )
    if labels.shape != (len(data),) or (labels.size and (labels.min() < 0 or labels.max() > 9)):
        raise DataFormatError(
            f"{path}: CIFAR-10 b'labels' must be {len(data)} integers in 0..9"
        )
    # Rows are stored channel-major (1024 red, 1024 green, 1024 blue), i.e. already CHW.
    return data.reshape(-1, 3, 32, 32), labels


def find_cifar10_folder(root: Path) -> Path:
    """Accept ``root`` = the ``cifar-10-batches-py`` folder itself or its parent."""
    if not root.is_dir():
        raise MissingPathError(
            f"CIFAR-10 folder {root} does not exist (expected the python-version "
            f"'{CIFAR10_FOLDER}' folder or its parent)"
        )
    for candidate in (root, root / CIFAR10_FOLDER):
        if (candidate / CIFAR10_TRAIN_FILES[0]).is_file():
            return candidate
    raise MissingPathError(
        f"no CIFAR-10 batches in {root} (expected {', '.join(CIFAR10_TRAIN_FILES)}, "
        f"{CIFAR10_TEST_FILE} in it or in {root / CIFAR10_FOLDER})"
    )


def load_cifar10(root: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, tuple[str, ...]]:
    """Load train + test batches merged: ``(images, labels, official_test_mask, class_names)``."""
    folder = find_cifar10_folder(root)
    names = (*CIFAR10_TRAIN_FILES, CIFAR10_TEST_FILE)
    missing = [n for n in names if not (folder / n).is_file()]
    if missing:
        raise MissingPathError(
            f"CIFAR-10 folder {folder} lacks {', '.join(missing)} "
            f"(expected {', '.join(names)})"
        )
    parts = [read_cifar_batch(folder / n) for n in names]
    images = np.concatenate([p[0] for p in parts])
    labels = np.concatenate([p[1] for p in parts])
    test_mask = np.zeros(len(labels), dtype=bool)
    test_mask[len(labels) - len(parts[-1][1]) :] = True
    class_names: tuple[str, ...] = CIFAR10_CLASSES
    meta_path = folder / CIFAR10_META_FILE
    if meta_path.is_file():
        meta = load_pickle_dict(meta_path)
        raw_names = meta.get(b"label_names")
        if not isinstance(raw_names, list | tuple) or len(raw_names) != 10:
            raise DataFormatError(f"{meta_path}: b'label_names' must be a list of 10 class names")
        class_names = tuple(n.decode() if isinstance(n, bytes) else str(n) for n in raw_names)
    else:
        logger.info("%s not found; using the standard CIFAR-10 class names", meta_path)
    return images, labels, test_mask, class_names
