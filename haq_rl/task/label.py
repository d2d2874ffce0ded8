"""What a run is, in words: the env id for a shipped task, the user's model otherwise.

A search of ``--model mypkg.nets:make --weights cnn.pt`` on a shipped env borrows that
env's dataset and hardware settings, but it is not that env's model: headers, records,
reports and the default run directory name it by its import path and the SHA-256 of its
weights file (the hash ``sha256sum cnn.pt`` prints), so two runs of one model with other
weights are told apart.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path

from haq_rl.task.spec import TaskSpec, shipped_specs

#: Hex digits of the weights file's SHA-256 shown in labels and folder names.
SHORT_HASH = 8


def is_own_model(spec: TaskSpec) -> bool:
    """True when ``spec`` runs a model other than the one its env id stands for: an import
    path, given weights, or another zoo model than the shipped env's."""
    if spec.id.startswith("python/"):  # Task.from_model: the id is the user's own name already
        return False
    if spec.weights is not None or ":" in spec.model:
        return True
    shipped = _shipped_models().get(spec.id)
    return shipped is not None and shipped != spec.model


def weights_file_sha256(path: str | os.PathLike[str] | None) -> str | None:
    """The weights file's SHA-256 (hex), or None without a readable file (the task's load
    then fails with its own message)."""
    if path is None:
        return None
    file = Path(path).expanduser()
    try:
        stat = file.stat()
    except OSError:
        return None
    try:
        return _hash_of(str(file.resolve()), stat.st_size, stat.st_mtime_ns)
    except OSError:  # unreadable: the task's load says why
        return None


def model_label(spec: TaskSpec) -> str:
    """``haq_rl/MobileNetV2Edge-v1`` for a shipped env's own model; for the user's,
    ``mypkg.nets:make, weights cnn.pt sha256:1a2b3c4d`` (the env id would name a model
    that is not the one searched)."""
    if not is_own_model(spec):
        return spec.id
    label = spec.model
    if spec.weights is not None:
        digest = weights_file_sha256(spec.weights)
        label += f", weights {Path(spec.weights).name}" + (f" sha256:{digest[:SHORT_HASH]}" if digest else "")
    return label


def folder_label(spec: TaskSpec) -> str:
    """The model part of a default run directory name: the env's name (``MobileNetV2Edge-v1``),
    or for the user's model its module and factory with the weights' short hash
    (``nets.make-1a2b3c4d``)."""
    if not is_own_model(spec):
        return spec.id.split("/")[-1]
    module, _, attr = spec.model.partition(":")
    name = f"{module.split('.')[-1]}.{attr}" if attr else module
    digest = weights_file_sha256(spec.weights)
    if digest:
        name += f"-{digest[:SHORT_HASH]}"
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in name)


@functools.lru_cache(maxsize=1)
def _shipped_models() -> dict[str, str]:
    return {env_id: spec.model for env_id, spec in shipped_specs().items()}


@functools.lru_cache(maxsize=32)
def _hash_of(path: str, size: int, mtime_ns: int) -> str:
    """Cached per file version (size and modification time): labels are asked for often."""
    from haq_rl.fileio import file_sha256

    return file_sha256(path)


def fields_label(fields: dict) -> tuple[str, bool]:
    """:func:`model_label` of a spec as a record saved it (config.json's ``env``, metrics.json's),
    and whether it is the user's own model; a record too damaged for a spec gets its id."""
    from haq_rl.errors import HaqError

    try:
        spec = TaskSpec.from_dict(dict(fields))
    except (HaqError, TypeError, ValueError):
        return str(fields.get("id", "?")), False
    return model_label(spec), is_own_model(spec)
