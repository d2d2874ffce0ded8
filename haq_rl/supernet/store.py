"""Where a trained supernet lives: the cache entry, its checksum and its resumable checkpoint.

A supernet is trained once per task and reused by every search, budget and method, like
the pretrained float model. Its files, in ``$HAQ_RL_CACHE/supernet/``, are named by a hash
of everything the weights depend on (:func:`supernet_identity`):

* ``<model>-<key>.pt``: ``{"format_version", "identity", "state_dict", "history"}``,
  tensors only (read with ``weights_only=True``);
* ``<model>-<key>.pt.sha256``: its SHA-256, written after it: an entry whose digest is
  missing or differs (a torn copy, a disk fault) is never used: it is retrained, with a
  warning;
* ``<model>-<key>.partial.pt``: the last checkpoint of a training in progress (weights,
  optimizer, step), from which a killed training resumes.

Everything is written atomically (temporary file, then rename).
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import math
from pathlib import Path
from typing import Any

import torch

from haq_rl.cache import write_cache_entry
from haq_rl.checkpoint_io import load_torch_file
from haq_rl.errors import CheckpointError, DataFormatError, UnsafeFileError
from haq_rl.fileio import atomic_write, file_sha256, parse_json, read_regular_bytes

logger = logging.getLogger(__name__)

FORMAT_VERSION = 1


def supernet_identity(task: Any, w_choices: list[tuple[int, ...]], a_choices: list[tuple[int, ...]],
                      training: dict[str, Any]) -> dict[str, Any]:
    """What a task's supernet depends on: model and weights, data, layers, widths, recipe.

    Not the hardware, the objective or the budget: one supernet serves them all.
    """
    spec = task.spec
    # The pixels it trains on; absent at the default so existing supernets keep their keys.
    pixels = {} if spec.normalize == "dataset" else {"normalize": spec.normalize}
    return {
        **pixels,
        "format_version": FORMAT_VERSION,
        "model": spec.model,
        "weights_sha256": task.meta.get("weights_sha256"),
        "dataset": spec.dataset,
        "input_size": spec.input_size,
        "width_mult": spec.width_mult,
        "split_seed": spec.split_seed,
        "calibration": spec.calibration,
        "calibration_batches": spec.calibration_batches,
        "reward_batch_size": spec.reward_batch_size,
        "layers": list(task.layer_names),
        "w_choices": [list(c) for c in w_choices],
        "a_choices": [list(c) for c in a_choices],
        "training": training,
    }


def identity_key(identity: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(identity, sort_keys=True, default=str).encode()).hexdigest()[:16]


def entry_path(identity: dict[str, Any]) -> Path:
    """The cache file of a supernet with this identity."""
    from haq_rl.cache import cache_dir

    return cache_dir("supernet") / f"{identity['model']}-{identity_key(identity)}.pt"


def partial_path(entry: Path) -> Path:
    return entry.with_name(entry.name.replace(".pt", ".partial.pt"))


def digest_path(entry: Path) -> Path:
    return entry.with_name(entry.name + ".sha256")


def save_entry(entry: Path, identity: dict[str, Any], state_dict: dict[str, torch.Tensor],
               history: dict[str, Any]) -> None:
    """Write the finished supernet, then its digest (an entry without one is incomplete); a
    cache that cannot take them is a warning (:func:`haq_rl.cache.write_cache_entry`)."""
    payload = {"format_version": FORMAT_VERSION, "identity": json.dumps(identity, sort_keys=True),
               "state_dict": state_dict, "history": json.dumps(history)}
    if write_cache_entry(entry, lambda stream: torch.save(payload, stream)):
        digest = (file_sha256(entry) + "\n").encode()
        write_cache_entry(digest_path(entry), lambda stream: stream.write(digest))


def read_entry(entry: Path, identity: dict[str, Any] | None, *, cached: bool = False) -> dict[str, Any]:
    """The supernet file at ``entry`` as ``{"identity", "state_dict", "history"}``.

    Raises CheckpointError (one line) when the file is unreadable, its digest does not
    match (a ``cached`` entry must have one: without it, it is incomplete), it was trained
    for another identity (``identity`` None: any), or what it holds is not what haq-rl
    writes (an identity that is no JSON object, weights that are no finite tensors, a
    history of the wrong kind): a valid checksum says the file is whole, not that it is ours.
    """
    digest_file = digest_path(entry)
    if cached or digest_file.exists() or digest_file.is_symlink():
        try:
            expected = read_regular_bytes(digest_file).decode("ascii").strip()
        except (OSError, UnsafeFileError, UnicodeDecodeError) as error:
            raise CheckpointError(f"supernet {entry} has no readable checksum file {digest_file.name} "
                                  f"({getattr(error, 'strerror', None) or error}): it is incomplete") from None
        if file_sha256(entry) != expected:
            raise CheckpointError(f"supernet {entry} does not match its checksum ({digest_file.name}): "
                                  "the file is corrupt or incomplete")
    payload = load_torch_file(entry, what="supernet")
    if not isinstance(payload, dict) or payload.get("format_version") != FORMAT_VERSION \
            or not {"identity", "state_dict"} <= set(payload):
        raise CheckpointError(f"{entry} is not a haq-rl supernet (format {FORMAT_VERSION})")
    try:
        found = parse_json(payload["identity"], f"{entry} identity")
        history = parse_json(payload.get("history") or "{}", f"{entry} history")
    except DataFormatError as error:
        raise CheckpointError(str(error)) from None
    problem = _content_problem(found, payload["state_dict"], history)
    if problem:
        raise CheckpointError(f"supernet {entry} is not a file haq-rl wrote: {problem}")
    if identity is not None and found != identity:
        raise CheckpointError(f"supernet {entry} was trained for another task: {_difference(found, identity)}")
    return {"identity": found, "state_dict": payload["state_dict"], "history": history}


def _content_problem(identity: Any, state_dict: Any, history: Any) -> str | None:
    """What in a supernet entry's contents is not of the kind save_entry writes, or None."""
    if not isinstance(identity, dict):
        return f"its identity is a {type(identity).__name__}, not an object"
    if not isinstance(state_dict, dict) or not all(isinstance(v, torch.Tensor) for v in state_dict.values()):
        return "its weights are not a dict of tensors"
    if not all(bool(torch.isfinite(v).all()) for v in state_dict.values() if v.is_floating_point()):
        return "its weights hold NaN or inf"
    if not isinstance(history, dict):
        return f"its history is a {type(history).__name__}, not an object"
    numbers = [history.get("steps"), history.get("seconds"), *(history.get("epoch_losses") or [])]
    if not isinstance(history.get("epoch_losses", []), list) or not all(
            v is None or (isinstance(v, int | float) and not isinstance(v, bool)) for v in numbers):
        return "its history holds values that are not numbers"
    return None


def _difference(found: dict[str, Any], wanted: dict[str, Any]) -> str:
    """The first setting in which two identities differ, in words."""
    for key in wanted:
        if found.get(key) != wanted[key]:
            if key == "layers":
                return (f"its layers ({len(found.get(key) or [])}) are not this model's "
                        f"({len(wanted[key])})")
            if key in ("w_choices", "a_choices"):
                return f"its bit widths ({key}) differ from this task's bit range and pinned layers"
            return f"{key} is {_short(found.get(key))}, this task's is {_short(wanted[key])}"
    return "its settings differ"


def _short(value: Any) -> str:
    text = json.dumps(value, sort_keys=True, default=str)
    return text if len(text) <= 60 else text[:57] + "..."


def save_partial(path: Path, state: dict[str, Any]) -> None:
    """Write a resumable checkpoint (weights, optimizer state, step, losses)."""
    buffer = io.BytesIO()
    torch.save(state, buffer)
    atomic_write(path, lambda stream: stream.write(buffer.getvalue()))


def read_partial(path: Path, identity: dict[str, Any], total: int | None = None) -> dict[str, Any] | None:
    """The checkpoint of an interrupted training of this identity, or None (with a warning
    when a file is there but cannot be used). With ``total`` (the training's steps), its
    ``step`` must lie in [1, total), with one finite loss at most per step done and finite
    seconds: a crafted ``step`` would otherwise end a training early (and cache it as
    trained) or run it backwards."""
    if not path.is_file():
        return None
    try:
        state = load_torch_file(path, what="supernet checkpoint")
    except CheckpointError as error:
        logger.warning("ignoring the supernet checkpoint: %s", error)
        return None
    if not isinstance(state, dict) or state.get("identity") != json.dumps(identity, sort_keys=True):
        logger.warning("ignoring the supernet checkpoint %s: it belongs to another training", path)
        return None
    if total is not None:
        problem = _partial_problem(state, total)
        if problem:
            logger.warning("ignoring the supernet checkpoint %s: %s; training from the start", path, problem)
            return None
    return state


def _partial_problem(state: dict[str, Any], total: int) -> str | None:
    """What makes a partial checkpoint unusable for a training of ``total`` steps, or None."""
    step, losses, seconds = state.get("step"), state.get("losses"), state.get("seconds")
    if isinstance(step, bool) or not isinstance(step, int) or not 0 < step < total:
        return f"its step {step!r} is not in [1, {total})"
    if not isinstance(losses, list) or len(losses) > step or not all(
            isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) for v in losses):
        return f"its losses are not at most {step} finite numbers"
    if isinstance(seconds, bool) or not isinstance(seconds, int | float) or not 0 <= seconds < math.inf:
        return f"its seconds {seconds!r} are not a finite duration"
    if not isinstance(state.get("model"), dict) or not isinstance(state.get("optimizer"), dict):
        return "it holds no model and optimizer state"
    return None
