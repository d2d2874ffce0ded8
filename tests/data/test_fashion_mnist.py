"""Fashion-MNIST: found without configuration, checked against its SHA-256, one line per fault."""

from __future__ import annotations

import functools
import http.server
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from haq_rl.cli import main
from haq_rl.data import fashion_mnist, load_dataset, make_splits, write_idx
from haq_rl.data.fashion_mnist import (
    DEBIAN_FOLDER,
    FASHION_MNIST_SHA256,
    find_fashion_mnist,
    load_fashion_mnist,
)
from haq_rl.errors import DataFormatError, MissingPathError

needs_files = pytest.mark.skipif(not (DEBIAN_FOLDER / "t10k-labels-idx1-ubyte.gz").is_file(),
                                 reason="Fashion-MNIST is not installed (make test installs Debian's "
                                        "dataset-fashion-mnist where apt-get and root are available)")


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No result cached across tests, no real download, an empty cache and no $HAQ_RL_DATA."""
    load_fashion_mnist.cache_clear()
    monkeypatch.setenv("HAQ_RL_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("HAQ_RL_DATA", raising=False)
    monkeypatch.setattr(fashion_mnist, "OFFICIAL_URL", "http://127.0.0.1:9/")  # refused at once
    yield
    load_fashion_mnist.cache_clear()


def _copy_official(folder: Path) -> Path:
    folder.mkdir(parents=True)
    for base in FASHION_MNIST_SHA256:
        shutil.copy(DEBIAN_FOLDER / f"{base}.gz", folder / f"{base}.gz")
    return folder


def _foreign_files(folder: Path) -> Path:
    """Four well-formed IDX files that are not Fashion-MNIST (their checksums differ)."""
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for base in FASHION_MNIST_SHA256:
        count = 60 if base.startswith("train") else 10
        data = rng.integers(0, 256, (count, 28, 28)) if "images" in base else rng.integers(0, 10, count)
        write_idx(folder / f"{base}.gz", data.astype(np.uint8))
    return folder


@needs_files
def test_the_default_dataset_is_the_official_split():
    """70,000 images; the official 10,000 are the test split, the reward split comes from training."""
    dataset = load_dataset("fashion-mnist")
    assert dataset.images.shape == (70_000, 1, 28, 28) and dataset.class_names[0] == "T-shirt/top"
    splits = make_splits(dataset)
    assert splits.official_test and splits.sizes == {"search_train": 54_000, "reward_val": 6_000, "test": 10_000}
    assert (splits.test_indices >= 60_000).all() and (splits.reward_indices < 60_000).all()


@needs_files
def test_found_in_haq_rl_data_and_in_a_named_folder(tmp_path, monkeypatch):
    own = _copy_official(tmp_path / "mine" / "fashion-mnist")
    monkeypatch.setenv("HAQ_RL_DATA", str(tmp_path / "mine"))
    assert find_fashion_mnist()["t10k-images-idx3-ubyte"].parent == own  # ahead of Debian's folder
    named = _copy_official(tmp_path / "named")
    assert find_fashion_mnist(named)["train-labels-idx1-ubyte"].parent == named


@needs_files
def test_downloaded_into_the_cache_when_found_nowhere(tmp_path, monkeypatch):
    """With no folder holding the files, the four are fetched (here from a local server) and checked."""
    served = _copy_official(tmp_path / "server")
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(served))
    handler.log_message = lambda *args: None  # type: ignore[method-assign]
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        monkeypatch.setattr(fashion_mnist, "DEBIAN_FOLDER", tmp_path / "no-debian")
        monkeypatch.setattr(fashion_mnist, "OFFICIAL_URL", f"http://127.0.0.1:{server.server_port}/")
        files = find_fashion_mnist()
    finally:
        server.shutdown()
    assert files["train-images-idx3-ubyte"].parent == tmp_path / "cache" / "datasets" / "fashion-mnist"
    assert sorted(p.name for p in files["train-images-idx3-ubyte"].parent.iterdir()) == sorted(
        f"{base}.gz" for base in FASHION_MNIST_SHA256)


def test_found_nowhere_says_how_to_get_it(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(fashion_mnist, "DEBIAN_FOLDER", tmp_path / "no-debian")
    with pytest.raises(MissingPathError) as caught:
        find_fashion_mnist()
    message = str(caught.value)
    assert "\n" not in message and "apt-get install dataset-fashion-mnist" in message
    assert "download from http://127.0.0.1:9/ failed" in message and "fashion-mnist.s3-website" in message
    assert not list((tmp_path / "cache" / "datasets" / "fashion-mnist").glob("*"))  # nothing half-fetched
    code = main(["pretrain", "--model", "lenet5", "--dataset", "fashion-mnist", "--out", str(tmp_path / "m.pt")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "dataset-fashion-mnist" in err[0]


def test_wrong_checksum_missing_file_and_truncated_gzip_are_one_line_each(tmp_path):
    folder = _foreign_files(tmp_path / "foreign")
    with pytest.raises(DataFormatError, match=r"SHA-256 .* differs from Fashion-MNIST's") as caught:
        load_fashion_mnist(str(folder))
    assert "\n" not in str(caught.value) and "train-images-idx3-ubyte" in str(caught.value)

    (folder / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(MissingPathError, match="lacks t10k-labels-idx1-ubyte"):
        load_fashion_mnist(str(folder))

    truncated = folder / "train-images-idx3-ubyte.gz"
    truncated.write_bytes(truncated.read_bytes()[:200])
    write_idx(folder / "t10k-labels-idx1-ubyte.gz", np.zeros(10, np.uint8))
    with pytest.raises(DataFormatError, match="not a readable Fashion-MNIST file") as caught:
        load_fashion_mnist(str(folder))
    assert "\n" not in str(caught.value)
    assert load_fashion_mnist.cache_info().currsize == 0  # nothing kept from a bad file
