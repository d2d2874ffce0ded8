"""The one atomic file write and the one JSON encoding, for every file haq-rl writes.

A file is written to a temporary name in its own folder, flushed to disk and renamed over
the target, so a killed process leaves the old file or the new one, never half of one
(at worst a stray ``.haq-rl-<name>.*.tmp`` that nothing reads). Base layer: no haq_rl
imports but errors, so hardware, quant, data and everything above can use it.

A run directory or a cache may come from a stranger: every file haq-rl opens in one goes
through :func:`open_regular` (never through a symbolic link, never a FIFO or a device), and
haq-rl's clean-up deletes only names of its own (:data:`OWN_PREFIX`).
"""

from __future__ import annotations

import errno
import hashlib
import itertools
import json
import math
import os
import re
import stat
import tempfile
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from haq_rl.errors import ConfigError, DataFormatError, MissingPathError, UnsafeFileError

#: What ``np.load(..., allow_pickle=False)`` raises on a damaged .npy or .npz (torn, emptied,
#: garbage, or holding objects), and indexing a missing array of an npz.
NUMPY_READ_ERRORS: tuple[type[Exception], ...] = (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile)


#: The start of every temporary, staging and lock name haq-rl makes beside its files: the
#: only names its clean-up deletes, so a user's ``.notes.tmp`` or another program's
#: ``.lock`` in an output folder is never touched.
OWN_PREFIX = ".haq-rl-"

#: How deep a JSON file may nest: far more than any file haq-rl writes, far less than
#: what makes the parser (or code walking the result) overflow Python's stack.
MAX_JSON_DEPTH = 64

_OPEN_FLAGS = {
    "r": os.O_RDONLY, "r+": os.O_RDWR,
    "w": os.O_WRONLY | os.O_CREAT | os.O_TRUNC, "w+": os.O_RDWR | os.O_CREAT | os.O_TRUNC,
    "a": os.O_WRONLY | os.O_CREAT | os.O_APPEND, "a+": os.O_RDWR | os.O_CREAT | os.O_APPEND,
}


def open_regular(path: str | os.PathLike[str], mode: str = "rb", **kwargs: Any) -> IO[Any]:
    """``open(path, mode, **kwargs)`` for a file of a run directory or the cache: never
    through a symbolic link and only a regular file (see :func:`open_regular_fd`)."""
    handle = open_regular_fd(path, _OPEN_FLAGS[mode.replace("b", "").replace("t", "")])
    try:
        return os.fdopen(handle, mode, **kwargs)
    except BaseException:
        os.close(handle)
        raise


def open_regular_fd(path: str | os.PathLike[str], flags: int) -> int:
    """``os.open(path, flags)`` that never follows a symbolic link at ``path`` (O_NOFOLLOW)
    and refuses anything but a regular file (a FIFO, a device, a folder) with
    UnsafeFileError (one line); a FIFO is refused without blocking on it. A missing file
    raises FileNotFoundError as ``open`` does (created with O_CREAT, under the umask)."""
    try:
        handle = os.open(path, flags | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, 0o666)
    except OSError as error:
        # ELOOP: a link; ENXIO: a FIFO without reader opened for writing; EISDIR: a folder.
        if error.errno in (errno.ELOOP, errno.ENXIO, errno.EISDIR):
            check_regular(path)
        raise
    try:
        info = os.fstat(handle)
        if not stat.S_ISREG(info.st_mode):
            raise UnsafeFileError(f"{path} is {_kind(info.st_mode)}, not a regular file: refused")
        os.set_blocking(handle, True)
    except BaseException:
        os.close(handle)
        raise
    return handle


def check_regular(path: str | os.PathLike[str]) -> None:
    """UnsafeFileError unless ``path`` is missing or a regular file itself (not a link to one)."""
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return
    if not stat.S_ISREG(info.st_mode):
        raise UnsafeFileError(f"{path} is {_kind(info.st_mode)}, not a regular file: refused")


def check_real_folder(folder: str | os.PathLike[str]) -> None:
    """UnsafeFileError unless ``folder`` is missing or a folder itself (not a link to one):
    a link would make haq-rl write outside the run directory."""
    try:
        info = os.lstat(folder)
    except FileNotFoundError:
        return
    if not stat.S_ISDIR(info.st_mode):
        raise UnsafeFileError(f"{folder} is {_kind(info.st_mode)}, not a folder: refused")


def _kind(mode: int) -> str:
    if stat.S_ISLNK(mode):
        return "a symbolic link (haq-rl never follows one in a run directory or the cache)"
    for test, name in ((stat.S_ISDIR, "a folder"), (stat.S_ISREG, "a file"), (stat.S_ISFIFO, "a FIFO"),
                       (stat.S_ISSOCK, "a socket"), (stat.S_ISCHR, "a device"), (stat.S_ISBLK, "a device")):
        if test(mode):
            return name
    return "a special file"


def read_regular_bytes(path: str | os.PathLike[str]) -> bytes:
    """The bytes of a regular file of a run directory or the cache (see :func:`open_regular`)."""
    with open_regular(path, "rb") as stream:
        return stream.read()


def atomic_write(path: str | os.PathLike[str], write: Callable[[IO[bytes]], Any]) -> Path:
    """Call ``write(stream)`` on a temporary binary file next to ``path``, then rename it into place."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f"{OWN_PREFIX}{path.name}.", suffix=".tmp")
    try:
        # mkstemp makes 0600 files whatever the umask; give the file the mode open() would
        # (the old file's, else 0666 less the umask), so a shared run or cache stays readable.
        os.fchmod(handle, _mode_for(path))
        with os.fdopen(handle, "wb") as stream:
            write(stream)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(tmp_name, path)
    except OSError as error:
        Path(tmp_name).unlink(missing_ok=True)
        if error.filename is None:  # a write's error names no file: name the one being written
            raise OSError(error.errno, error.strerror or str(error), str(path)) from None
        raise
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
    with open_regular(path, "rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def remove_stale_temps(folder: str | os.PathLike[str]) -> list[Path]:
    """Delete the temporary files that killed haq-rl writers left in ``folder``; returns them.

    Only names haq-rl makes (``.haq-rl-*.tmp``, :func:`atomic_write`): a user's or another
    program's ``.*.tmp`` beside them is not ours to delete. Only for a folder whose writer
    holds its lock (:func:`haq_rl.run.lock.run_lock`): another live writer's temporary file
    would be deleted under it.
    """
    stale = [path for path in Path(folder).glob(f"{OWN_PREFIX}*.tmp")
             if stat.S_ISREG(path.lstat().st_mode) or path.is_symlink()]  # unlink removes a link, not its target
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
    try:
        data = read_regular_bytes(path)
    except (FileNotFoundError, IsADirectoryError):
        raise MissingPathError(f"file not found: {path}") from None
    return parse_json(data, str(path))


def parse_json(text: str | bytes, source: str) -> Any:
    """``json.loads(text)`` with one-line DataFormatError naming ``source`` for malformed JSON
    and for JSON nested deeper than :data:`MAX_JSON_DEPTH` (which would otherwise end in a
    RecursionError, here or in the code that walks it)."""
    if not isinstance(text, str | bytes):
        raise DataFormatError(f"{source} is not JSON text but {type(text).__name__}")
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError as error:
            raise DataFormatError(f"{source} is not valid JSON: {error}") from None
    depth = json_depth(text)
    if depth > MAX_JSON_DEPTH:
        raise DataFormatError(f"{source} nests {depth} levels deep (at most {MAX_JSON_DEPTH}): not a file haq-rl "
                              "wrote")
    try:
        return json.loads(text)
    except (json.JSONDecodeError, RecursionError) as error:
        raise DataFormatError(f"{source} is not valid JSON: {error}") from None


def json_depth(text: str) -> int:
    """The deepest nesting of brackets outside strings, counted without parsing."""
    if text.count("[") + text.count("{") <= MAX_JSON_DEPTH:  # the common case: nothing to count
        return 0
    brackets = _NOT_BRACKET.sub("", _JSON_STRING.sub("", text))
    return max(itertools.accumulate(1 if char in "[{" else -1 for char in brackets), default=0)


_JSON_STRING = re.compile(r'"(?:[^"\\]|\\.)*"')
_NOT_BRACKET = re.compile(r"[^\[\]{}]")


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
