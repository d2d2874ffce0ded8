"""Safe reading and atomic writing of torch checkpoint files (weights_only, no pickle code)."""

from __future__ import annotations

import io
import pickle
import re
from pathlib import Path
from typing import Any

import torch

from haq_rl.errors import CheckpointError, MissingPathError
from haq_rl.fileio import atomic_write


def atomic_torch_save(obj: Any, path: Path) -> None:
    """torch.save through :func:`haq_rl.fileio.atomic_write`: never a half-written checkpoint.

    The checkpoint is serialised in memory first: a write that fails (a full disk) then
    raises the file system's OSError, which the CLI shows in one line, instead of torch's
    own writer failing with a RuntimeError about stream positions."""
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    atomic_write(path, lambda stream: stream.write(buffer.getbuffer()))


def load_torch_file(path: str | Path, what: str = "checkpoint") -> Any:
    """``torch.load(weights_only=True, map_location="cpu")`` of ``path``: a file that needs
    unpickling code is refused. Raises MissingPathError when absent and CheckpointError
    (one line naming ``what`` and the path) when unreadable."""
    path = Path(path).expanduser()
    if path.is_dir():  # "not found" would send the user looking for a missing file
        raise CheckpointError(f"{what} {path} is a folder, not a file")
    if not path.is_file():
        raise MissingPathError(f"{what} not found: {path}")
    try:
        return torch.load(path, weights_only=True, map_location="cpu")
    except pickle.UnpicklingError as error:
        # torch's message goes on to suggest weights_only=False: for a file that needs code
        # to load, that is the one thing not to do. Keep only what it would have to run, or,
        # for bytes that are no pickle at all, what the reader stumbled on.
        text = str(error)
        wants = re.search(r"(?:GLOBAL|global) ([\w.]+)", text)
        if wants is None:
            found = re.search(r"WeightsUnpickler error:\s*(\S[^\n]*)", text)
            detail = found.group(1).strip() if found else _first_line(error)
            raise CheckpointError(f"cannot read {what} {path} (weights_only=True): {detail}") from None
        raise CheckpointError(f"refused {what} {path} (weights_only=True): loading it would run code: "
                              f"it needs {wants.group(1)} (only tensors, numbers and strings are read)") from None
    except Exception as error:  # torch raises many kinds (zip, EOF, Runtime)
        raise CheckpointError(f"cannot read {what} {path} (weights_only=True): {_first_line(error)}") from None


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def read_torch_file(path: str | Path, required: set[str], kind: str) -> dict[str, Any]:
    """:func:`load_torch_file` of a dict holding ``required`` keys; CheckpointError (one
    line) when it is not a ``kind`` file."""
    payload = load_torch_file(path)
    if not isinstance(payload, dict) or not required <= payload.keys():
        raise CheckpointError(f"{Path(path).expanduser()} is not a {kind} "
                              f"(expected keys {', '.join(sorted(required))})")
    return payload
