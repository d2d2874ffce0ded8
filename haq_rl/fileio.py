"""The one atomic file write and the one JSON encoding, for every file haq-rl writes.

A file is written to a temporary name in its own folder, flushed to disk and renamed over
the target, so a killed process leaves the old file or the new one, never half of one
(at worst a stray ``.<name>.*.tmp`` that nothing reads). Base layer: no haq_rl imports
but errors, so hardware, quant, data and everything above can use it.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import tempfile
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from haq_rl.errors import ConfigError, DataFormatError, MissingPathError

#: What ``np.load(..., allow_pickle=False)`` raises on a damaged .npy or .npz (torn, emptied,
#: garbage, or holding objects), and indexing a missing array of an npz.
NUMPY_READ_ERRORS: tuple[type[Exception], ...] = (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile)


def atomic_write(path: str | os.PathLike[str], write: Callable[[IO[bytes]], Any]) -> Path:
    """Call ``write(stream)`` on a temporary binary file next to ``path``, then rename it into place."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        # mkstemp makes 0600 files whatever the umask; give the file the mode open() would
        # (the old file's, else 0666 less the umask), so a shared run or cache stays readable.
        os.fchmod(handle, _mode_for(path))
        with os.fdopen(handle, "wb") as stream:
            write(stream)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    return path


def check_writable_folder(folder: str | os.PathLike[str], what: str) -> Path:
    """Raise ConfigError (one line) now, before any work, if files cannot be written in
    ``folder``: a file stands where it or a folder above it should be, or the first folder
    that exists on its way is read-only. Creates nothing."""
    folder = Path(folder).expanduser()
    existing = folder
    while not existing.exists() and existing != existing.parent:
        if existing.is_symlink():  # a dangling link: mkdir would fail on it
            raise ConfigError(f"{what} {folder}: {existing} is a broken link")
        existing = existing.parent
    if not existing.is_dir():
        raise ConfigError(f"{what} {folder}: {existing} is a file, not a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ConfigError(f"{what} {folder}: folder {existing} is read-only")
    return folder


def _mode_for(path: Path) -> int:
    try:
        return path.stat().st_mode & 0o7777
    except OSError:
        umask = os.umask(0)  # the only way to read it; set straight back
        os.umask(umask)
        return 0o666 & ~umask


def file_sha256(path: str | os.PathLike[str]) -> str:
    """Hex SHA-256 of a file's bytes, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def remove_stale_temps(folder: str | os.PathLike[str]) -> list[Path]:
    """Delete the temporary files that killed writers left in ``folder``; returns them.

    Only for a folder whose writer holds its lock (:func:`haq_rl.run.lock.run_lock`):
    another live writer's temporary file would be deleted under it.
    """
    stale = [path for path in Path(folder).glob(".*.tmp") if path.is_file()]
    for path in stale:
        path.unlink(missing_ok=True)
    return stale


def write_text_atomic(path: str | os.PathLike[str], text: str) -> Path:
    """Write UTF-8 text atomically."""
    return atomic_write(path, lambda stream: stream.write(text.encode("utf-8")))


def to_json(data: Any) -> str:
    """Indented JSON; numpy scalars and arrays become numbers and lists, paths strings."""
    return json.dumps(data, indent=2, default=_jsonable) + "\n"


def write_json_atomic(path: str | os.PathLike[str], data: Any) -> Path:
    """Write ``data`` as indented JSON atomically (see :func:`to_json`)."""
    return write_text_atomic(path, to_json(data))


def read_json(path: str | os.PathLike[str]) -> Any:
    """Parse a JSON file; one-line errors for a missing or malformed file."""
    path = Path(path)
    if not path.is_file():
        raise MissingPathError(f"file not found: {path}")
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise DataFormatError(f"{path} is not valid JSON: {error}") from None


def yaml_error_line(error: Exception) -> str:
    """A YAML parser error in one line: ``expected ',' or ']' at line 4, column 1``."""
    mark = getattr(error, "problem_mark", None)
    lines = str(error).strip().splitlines()
    problem = getattr(error, "problem", None) or (lines[0] if lines else type(error).__name__)
    return f"{problem} at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else problem


def finite_or_none(value: Any) -> float | None:
    """A float, or None where it is NaN or infinite: JSON has no NaN (e.g. the energy of a
    profile that models none is written as null)."""
    value = float(value)
    return value if math.isfinite(value) else None


def _jsonable(value: Any) -> Any:
    if hasattr(value, "tolist"):  # numpy arrays and scalars
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")
