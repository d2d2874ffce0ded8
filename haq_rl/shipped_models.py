"""Float checkpoints shipped inside the package, so every machine starts from the same model.

Float training is not bit-reproducible across CPUs or even thread counts (the default
MobileNetV2 scored 96.1 % with one thread and 95.2 % with two on the same machine), and
every figure in the docs depends on the float model. So the embedded defaults' float
models are trained once, stored in fp16 (half the size; the accuracy is re-measured on
the fp16-rounded weights, which are then the reference), and shipped under
``haq_rl/resources/pretrained/`` with a manifest holding each file's SHA-256.

:func:`haq_rl.pretrain.get_pretrained` uses a shipped model when one matches the config;
``haq-rl pretrain --force`` trains one on this machine instead, and the cache then wins.

Results computed from a shipped model that are the same on every machine and slow to
compute (the default env's Hessian layer sensitivities) ship beside it as *entries*: the
cache file itself, under its cache name, with its SHA-256 in the manifest's ``entries``
table (:func:`shipped_entry`).

Maintainers refresh the shipped files with ``python -m haq_rl.maintain.ship <cached.pt> ...``
and ``python -m haq_rl.maintain.ship --entry <cached.npz> ...`` (:mod:`haq_rl.maintain.ship`).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import torch
from torch import nn

from haq_rl.errors import CheckpointError
from haq_rl.fileio import file_sha256

SHIPPED_DIR = Path(__file__).resolve().parent / "resources" / "pretrained"
MANIFEST_NAME = "manifest.json"


def weights_sha256(model: nn.Module) -> str:
    """Hex SHA-256 of a model's state (names, dtypes, shapes and bytes, in order).

    Two models with the same digest compute the same function; config.json records it so
    two runs can be told apart by their float model.
    """
    digest = hashlib.sha256()
    for name, tensor in model.state_dict().items():
        value = tensor.detach().cpu().contiguous()
        digest.update(f"{name}:{value.dtype}:{tuple(value.shape)};".encode())
        digest.update(value.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def float_model_record(meta: dict[str, Any]) -> dict[str, Any]:
    """Which float model a run started from (recorded in config.json): its source and the
    SHA-256 of its weights, so two runs can be told apart, or shown to share one."""
    return {"source": meta.get("source", "weights file" if meta.get("weights") else "python object"),
            "weights_sha256": meta.get("weights_sha256"), "weights": meta.get("weights")}


def read_manifest(folder: Path = SHIPPED_DIR) -> dict[str, Any]:
    """The manifest of ``folder``: its models and entries tables (empty when there is none)."""
    path = folder / MANIFEST_NAME
    if not path.is_file():
        return {"format_version": 1, "models": {}}
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise CheckpointError(f"shipped model manifest {path} is unreadable: {error}") from None
    if not isinstance(data, dict) or not isinstance(data.get("models"), dict) \
            or not isinstance(data.get("entries", {}), dict):
        raise CheckpointError(f"shipped model manifest {path} has no 'models' table")
    return data


def _manifest(folder: Path = SHIPPED_DIR) -> dict[str, Any]:
    return read_manifest(folder)["models"]


def shipped_entry(name: str, folder: Path = SHIPPED_DIR) -> Path | None:
    """The shipped cache entry called ``name`` (a cache file name), checksum verified; None if none ships.

    A damaged entry is not used (None, with the caller computing it as if none shipped):
    unlike a float model, an entry can always be recomputed here.
    """
    entry = read_manifest(folder).get("entries", {}).get(name)
    path = folder / name
    if not isinstance(entry, dict) or Path(name).name != name or not path.is_file() or path.is_symlink():
        return None
    return path if file_sha256(path) == entry.get("sha256") else None


def shipped_checkpoint(config_hash: str, folder: Path = SHIPPED_DIR) -> Path | None:
    """The shipped checkpoint for a PretrainConfig hash, checksum verified; None if none ships.

    Raises:
        CheckpointError: the file is missing or fails its checksum (a damaged install:
            reinstall haq-rl, or train one here with ``haq-rl pretrain --force``).
    """
    entry = _manifest(folder).get(config_hash)
    if entry is None:
        return None
    path = folder / str(entry["file"])
    if not path.is_file() or file_sha256(path) != entry["sha256"]:
        raise CheckpointError(f"shipped float model {path} is missing or fails its SHA-256 check; "
                              "reinstall haq-rl or train one here with `haq-rl pretrain --force`")
    return path


def shipped_hashes(folder: Path = SHIPPED_DIR) -> list[str]:
    """The PretrainConfig hashes that have a shipped checkpoint."""
    return sorted(_manifest(folder))
