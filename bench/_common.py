"""Helpers shared by the benchmark scripts: CSV + markdown output, the timed onnxruntime session."""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"


def write_results(name: str, rows: Sequence[dict[str, Any]], title: str, command: str) -> Path:
    """Write results/<name>.csv and results/<name>.md (a markdown table) and return the md path."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    columns = list(rows[0])
    with open(RESULTS / f"{name}.csv", "w", newline="") as stream:
        writer = csv.DictWriter(stream, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
    lines = [f"### {title}", "", f"Command: `{command}`", "",
             "| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for row in rows:
        lines.append("| " + " | ".join(_fmt(row[c]) for c in columns) + " |")
    path = RESULTS / f"{name}.md"
    path.write_text("\n".join(lines) + "\n")
    return path


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def ort_session(path: Path) -> Any:
    """An onnxruntime CPU session pinned to one thread, run sequentially: every timed model alike."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.execution_mode = onnxruntime.ExecutionMode.ORT_SEQUENTIAL
    options.log_severity_level = 3
    return onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
