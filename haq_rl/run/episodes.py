"""The episodes log of a search: episodes.csv, one row per evaluated policy.

Rows are appended one ``write`` + ``fsync`` at a time. A killed process can still leave a
partial last line: readers drop it, and the writer that reopens the log (``--resume``)
first cuts it from the file (atomically, with a one-line warning), so the next row never
continues it. A log that does not start with the search's header is refused, never
appended to. :func:`read_episode_rows` checks every row (cell count, numbers, bits).
"""

from __future__ import annotations

import csv
import io
import logging
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from haq_rl.errors import DataFormatError, MissingPathError
from haq_rl.fileio import (
    atomic_write,
    check_regular,
    open_regular_fd,
    read_regular_bytes,
    write_text_atomic,
)

logger = logging.getLogger(__name__)

BASE_COLUMNS = (
    "episode", "phase", "reward", "accuracy", "cost_ratio", "latency_ms", "energy_uj",
    "size_bytes", "bops", "bits_lowered",
)


def episode_columns(layer_names: Sequence[str], extra: Sequence[str] = ()) -> list[str]:
    """The CSV header: base metrics, ``extra`` columns, then ``w:<layer>`` and ``a:<layer>``
    for every layer."""
    return [*BASE_COLUMNS, *extra, *(f"w:{name}" for name in layer_names),
            *(f"a:{name}" for name in layer_names)]


class EpisodeLog:
    """Append-only episodes.csv with atomic rows."""

    def __init__(self, path: Path, columns: Sequence[str]) -> None:
        self.path = Path(path)
        self.columns = list(columns)
        check_regular(self.path)  # a link, a FIFO, a folder: refused before anything is written
        if not self.path.exists() or self.path.stat().st_size == 0:
            self._append_line(self._header())
        else:
            self._repair()

    def _header(self) -> str:
        return self._format(dict(zip(self.columns, self.columns, strict=True)))

    def _repair(self) -> None:
        """Refuse a log of another search or of garbage; cut a torn last row from the file."""
        data = read_regular_bytes(self.path)
        if not data.startswith(self._header().encode()):
            first = data.split(b"\n", 1)[0][:60].decode(errors="replace")
            raise DataFormatError(f"{self.path} does not start with this search's header (it starts {first!r}); "
                                  "it is not appended to")
        if data.endswith(b"\n"):
            return
        whole = data[: data.rfind(b"\n") + 1]
        atomic_write(self.path, lambda stream: stream.write(whole))
        logger.warning("%s ended in a torn row (%d bytes, left by a killed process): cut at its last whole row",
                       self.path, len(data) - len(whole))

    def append(self, row: dict[str, Any]) -> None:
        self._append_line(self._format(row))

    def _format(self, row: dict[str, Any]) -> str:
        buffer = io.StringIO()
        csv.writer(buffer, lineterminator="\n").writerow([_cell(row.get(c, "")) for c in self.columns])
        return buffer.getvalue()

    def _append_line(self, line: str) -> None:
        # One os.write of a complete line: a kill leaves either the whole row or none of
        # it (or, at worst, a line without newline that read_rows drops).
        fd = open_regular_fd(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
        try:
            os.write(fd, line.encode())
            os.fsync(fd)
        finally:
            os.close(fd)

    def read_rows(self) -> list[dict[str, str]]:
        return read_episode_rows(self.path)

    def truncate(self, keep_episodes: int) -> None:
        """Keep the header and the rows with ``episode < keep_episodes`` (used on resume)."""
        rows = [r for r in self.read_rows() if int(r["episode"]) < keep_episodes]
        text = self._header()
        text += "".join(self._format(row) for row in rows)
        write_text_atomic(self.path, text)


#: Columns that hold text, not numbers.
_TEXT_COLUMNS = frozenset({"phase"})


def read_episode_rows(path: Path) -> list[dict[str, str]]:
    """Complete rows of an episodes.csv (a trailing partial line is ignored).

    Raises MissingPathError for a missing file and DataFormatError (one line naming the
    line and the cell) for a file without the base columns, a row with the wrong number
    of cells, or a cell that is not a number (episode and bits: integers).
    """
    path = Path(path)
    try:
        text = read_regular_bytes(path).decode()
    except (FileNotFoundError, IsADirectoryError):
        raise MissingPathError(f"file not found: {path}") from None
    except UnicodeDecodeError:
        raise DataFormatError(f"{path} is not a text file (not an episodes.csv)") from None
    if text and not text.endswith("\n"):
        text = text[: text.rfind("\n") + 1]
    try:
        lines = list(csv.reader(io.StringIO(text)))
    except csv.Error as error:
        raise DataFormatError(f"{path} is not a CSV file: {error}") from None
    if not lines:
        return []
    header = lines[0]
    missing = [column for column in ("episode", "reward", "accuracy", "cost_ratio") if column not in header]
    if missing:
        raise DataFormatError(f"{path} has no {', '.join(missing)} column(s) in its header: not an episodes.csv")
    rows = []
    for number, cells in enumerate(lines[1:], start=2):
        if len(cells) != len(header):
            raise DataFormatError(f"{path} line {number} has {len(cells)} cells; the header has {len(header)}")
        row = dict(zip(header, cells, strict=True))
        for column, value in row.items():
            if column not in _TEXT_COLUMNS and not _numeric(column, value):
                raise DataFormatError(f"{path} line {number}: {column}={value!r} is not "
                                      f"{'an integer' if _integer_column(column) else 'a number'}")
        rows.append(row)
    return rows


def _integer_column(column: str) -> bool:
    return column in ("episode", "bits_lowered") or column.startswith(("w:", "a:"))


def _numeric(column: str, value: str) -> bool:
    if value == "":
        return not (column == "episode" or column.startswith(("w:", "a:")))
    try:
        number = float(value)
    except ValueError:
        return False
    if _integer_column(column):
        return number.is_integer() and (column == "bits_lowered" or number >= (1 if ":" in column else 0))
    return not math.isinf(number) or column == "reward"


def _cell(value: Any) -> Any:
    if isinstance(value, float):
        return repr(value) if value == value else ""
    return value
