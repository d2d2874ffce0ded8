"""Fashion-MNIST (Xiao, Rasul and Vollgraf, 2017; Zalando, MIT licence): 70,000 images, offline.

The four IDX files are looked for, in this order, in a folder the user names
(``--data-root``), in ``$HAQ_RL_DATA/fashion-mnist``, in Debian's package
``dataset-fashion-mnist`` (``/usr/share/datasets/fashion-mnist``) and in haq-rl's cache,
where a download from the dataset's official location lands. Every file is checked
against the SHA-256 of its *uncompressed* IDX payload, so a ``.gz`` recompressed by a
packager (Debian's are) and the raw file both pass, and a damaged or foreign file is
refused before anything is derived from it.
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import logging
import os
import shutil
import tempfile
import urllib.request
import zlib
from pathlib import Path

import numpy as np

from haq_rl.errors import DataFormatError, MissingPathError

from .idx import IDX_IMAGES_MAGIC, IDX_LABELS_MAGIC, read_idx
from .mnist import find_idx_file

logger = logging.getLogger(__name__)

FASHION_MNIST_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
                         "Sneaker", "Bag", "Ankle boot")

#: SHA-256 of each file's uncompressed IDX bytes (the dataset's release of 2017, unchanged since).
FASHION_MNIST_SHA256 = {
    "train-images-idx3-ubyte": "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
    "train-labels-idx1-ubyte": "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
    "t10k-images-idx3-ubyte": "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
    "t10k-labels-idx1-ubyte": "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
}
#: The dataset's official download location (its README, github.com/zalandoresearch/fashion-mnist).
OFFICIAL_URL = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"
DEBIAN_FOLDER = Path("/usr/share/datasets/fashion-mnist")
HOW_TO_GET = (f"install Debian's package (apt-get install dataset-fashion-mnist), or download the four "
              f"files from {OFFICIAL_URL} into a folder and pass it as --data-root")
_DOWNLOAD_TIMEOUT_S = 30


def candidate_folders(root: str | Path | None) -> list[Path]:
    """Where the files are looked for, first match wins: the named folder only, when one is named."""
    if root is not None:
        return [Path(root).expanduser()]
    from haq_rl.cache import cache_dir

    folders = []
    if os.environ.get("HAQ_RL_DATA"):
        folders.append(Path(os.environ["HAQ_RL_DATA"]).expanduser() / "fashion-mnist")
    folders.append(DEBIAN_FOLDER)
    folders.append(cache_dir("datasets") / "fashion-mnist")
    return folders


def _complete(folder: Path) -> bool:
    return all(find_idx_file(folder, base) is not None for base in FASHION_MNIST_SHA256)


def _payload_sha256(path: Path) -> str:
    """SHA-256 of the IDX bytes: gunzipped when the file is gzip (by its magic bytes, not its name)."""
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as head:
            gzipped = head.read(2) == b"\x1f\x8b"
    except OSError as error:
        raise DataFormatError(f"{path}: not a readable Fashion-MNIST file ({error.strerror}); {HOW_TO_GET}") from None
    opener = gzip.open if gzipped else open
    try:
        with opener(path, "rb") as stream:  # type: ignore[operator]
            for block in iter(lambda: stream.read(1 << 20), b""):
                digest.update(block)
    except (OSError, EOFError, zlib.error) as error:
        raise DataFormatError(f"{path}: not a readable Fashion-MNIST file ({error}); {HOW_TO_GET}") from None
    return digest.hexdigest()


def verify_folder(folder: Path) -> dict[str, Path]:
    """The four files of ``folder`` by base name, each checked against its SHA-256.

    Raises:
        MissingPathError: a file is missing.
        DataFormatError: a file is unreadable (a truncated gzip) or its checksum differs.
    """
    files: dict[str, Path] = {}
    for base in FASHION_MNIST_SHA256:  # every file present before any is read
        path = find_idx_file(folder, base)
        if path is None:
            raise MissingPathError(f"Fashion-MNIST folder {folder} lacks {base} (or {base}.gz); {HOW_TO_GET}")
        files[base] = path
    for base, path in files.items():
        found = _payload_sha256(path)
        expected = FASHION_MNIST_SHA256[base]
        if found != expected:
            raise DataFormatError(f"{path}: SHA-256 {found[:12]}... differs from Fashion-MNIST's "
                                  f"{expected[:12]}... (a damaged or different file); {HOW_TO_GET}")
    return files


def _download(folder: Path) -> None:
    """Fetch the four official files into ``folder`` (each checked before it is kept)."""
    folder.mkdir(parents=True, exist_ok=True)
    for base, expected in FASHION_MNIST_SHA256.items():
        target = folder / f"{base}.gz"
        if target.is_file() and _payload_sha256(target) == expected:
            continue
        url = f"{OFFICIAL_URL}{base}.gz"
        logger.info("downloading %s", url)
        handle, temp_name = tempfile.mkstemp(prefix=".haq-rl-", suffix=".tmp", dir=folder)
        temp = Path(temp_name)
        try:
            with os.fdopen(handle, "wb") as out, urllib.request.urlopen(url, timeout=_DOWNLOAD_TIMEOUT_S) as answer:
                shutil.copyfileobj(answer, out)
            if _payload_sha256(temp) != expected:
                raise DataFormatError(f"{url}: the download's SHA-256 differs from Fashion-MNIST's")
            os.replace(temp, target)
        finally:
            temp.unlink(missing_ok=True)


def find_fashion_mnist(root: str | Path | None = None, download: bool = True) -> dict[str, Path]:
    """The four verified Fashion-MNIST files by base name, downloaded into the cache if needed.

    Raises:
        MissingPathError: no folder has the files and the download failed (one line saying how
            to get them).
        DataFormatError: the first folder that has all four files holds a damaged one.
    """
    folders = candidate_folders(root)
    for folder in folders:
        if folder.is_dir() and _complete(folder):
            return verify_folder(folder)
    if root is not None:
        verify_folder(folders[0])  # names the missing file
    if download:
        try:
            _download(folders[-1])
            return verify_folder(folders[-1])
        except (OSError, DataFormatError) as error:
            logger.debug("Fashion-MNIST download failed: %s", error)
            reason = f"the download from {OFFICIAL_URL} failed ({error})"
    else:
        reason = "downloads are off"
    raise MissingPathError(f"Fashion-MNIST not found in {', '.join(str(f) for f in folders)} and {reason}; "
                           f"{HOW_TO_GET}")


@functools.lru_cache(maxsize=2)
def load_fashion_mnist(root: str | Path | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(images (70000, 1, 28, 28) uint8, labels, official_test_mask)``: train then the official test."""
    files = find_fashion_mnist(root)
    train = read_idx(files["train-images-idx3-ubyte"], IDX_IMAGES_MAGIC)
    train_labels = read_idx(files["train-labels-idx1-ubyte"], IDX_LABELS_MAGIC)
    test = read_idx(files["t10k-images-idx3-ubyte"], IDX_IMAGES_MAGIC)
    test_labels = read_idx(files["t10k-labels-idx1-ubyte"], IDX_LABELS_MAGIC)
    images = np.concatenate([train, test])[:, None, :, :]
    labels = np.concatenate([train_labels, test_labels]).astype(np.int64)
    mask = np.concatenate([np.zeros(len(train), bool), np.ones(len(test), bool)])
    images.setflags(write=False)  # shared through the lru_cache: nobody may change it
    return images, labels, mask
