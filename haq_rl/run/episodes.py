"""The episodes log of a search: episodes.csv, one row per evaluated policy.

Rows are appended one ``write`` + ``fsync`` at a time, and a partial last line left by a
killed process is dropped on reading, so the file never holds half a row.
"""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from haq_rl.fileio import write_text_atomic

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
        if not self.path.exists() or self.path.stat().st_size == 0:
            self._append_line(self._format(dict(zip(self.columns, self.columns, strict=True))))

    def append(self, row: dict[str, Any]) -> None:
        self._append_line(self._format(row))

    def _format(self, row: dict[str, Any]) -> str:
        buffer = io.StringIO()
        csv.writer(buffer, lineterminator="\n").writerow([_cell(row.get(c, "")) for c in self.columns])
        return buffer.getvalue()

    def _append_line(self, line: str) -> None:
        # One os.write of a complete line: a kill leaves either the whole row or none of
        # it (or, at worst, a line without newline that read_rows drops).
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
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
        text = self._format(dict(zip(self.columns, self.columns, strict=True)))
        text += "".join(self._format(row) for row in rows)
        write_text_atomic(self.path, text)


def read_episode_rows(path: Path) -> list[dict[str, str]]:
    """Complete rows of an episodes.csv (a trailing partial line is ignored)."""
    text = Path(path).read_text()
    if text and not text.endswith("\n"):
        text = text[: text.rfind("\n") + 1]
    return list(csv.DictReader(io.StringIO(text)))


def _cell(value: Any) -> Any:
    if isinstance(value, float):
        return repr(value) if value == value else ""
    return value
