"""Lookup tables of measured (or published) per-layer costs.

Formats, indexed like every cost table, ``[layer, w_bits-1, a_bits-1]``:

- ``.npy``: a numeric array of shape (layers, W, A) of latencies (HAQ's published
  format, e.g. its MobileNetV2 cloud table);
- ``.csv``: a header with columns ``layer,w_bits,a_bits,latency`` and optionally
  ``energy``; ``layer`` is the 0-based layer index or the layer name.

The profile's ``params.unit`` says whether latencies are ``cycles`` (default; converted to
ms with ``clock_mhz``) or ``ms``; ``energy_unit`` (default uJ) scales the energy column.
A table whose layer count differs from the model's is an error, never silently cut.
"""

from __future__ import annotations

import csv
import logging
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, cast

import numpy as np

from haq_rl.errors import DataFormatError, MissingPathError
from haq_rl.fileio import NUMPY_READ_ERRORS
from haq_rl.hardware.layer_spec import LayerSpec
from haq_rl.hardware.machine import check_measured_on_this_machine

logger = logging.getLogger(__name__)

class MeasuredElsewhereWarning(UserWarning):
    """A measured lookup table comes from another machine or onnxruntime version."""


_ENERGY_TO_UJ = {"uJ": 1.0, "mJ": 1e3, "nJ": 1e-3, "pJ": 1e-6}


#: Bounds of a lookup table read from a file (bits per operand, layers).
MAX_TABLE_BITS = 32
MAX_TABLE_LAYERS = 100_000


def _check_costs(path: Path, column: str, values: Sequence[float]) -> None:
    """DataFormatError unless every cost is a finite number >= 0 (a measured latency of
    -3 ms would make the cheapest policy the one that costs most)."""
    bad = [v for v in values if not (np.isfinite(v) and v >= 0)]
    if bad:
        raise DataFormatError(f"{path}: {column} {bad[0]!r} is not a finite number >= 0")


def read_table(path: str | Path, layer_names: Sequence[str] | None = None
               ) -> tuple[np.ndarray, np.ndarray | None]:
    """Read a table file: (latency [L, W, A], energy [L, W, A] or None). Missing cells are NaN."""
    path = Path(path)
    if not path.is_file():
        raise MissingPathError(f"lookup table not found: {path}")
    if path.suffix == ".npy":
        try:
            table = np.load(path, allow_pickle=False)
        except NUMPY_READ_ERRORS as error:
            raise DataFormatError(f"{path}: not a plain numeric .npy array ({error})") from error
        if table.ndim != 3 or not np.issubdtype(table.dtype, np.number):
            raise DataFormatError(f"{path}: expected a numeric array [layer, w_bits, a_bits], "
                                  f"got shape {table.shape} dtype {table.dtype}")
        return table.astype(np.float64), None
    if path.suffix != ".csv":
        raise DataFormatError(f"{path}: lookup tables are .npy or .csv files")
    try:
        with path.open(newline="", encoding="utf-8") as handle:
            rows = list(csv.DictReader(handle))
    except (UnicodeDecodeError, csv.Error) as error:
        raise DataFormatError(f"{path}: not a CSV lookup table ({type(error).__name__})") from None
    needed = {"layer", "w_bits", "a_bits", "latency"}
    if not rows or not needed <= set(rows[0]):
        raise DataFormatError(f"{path}: need CSV columns {', '.join(sorted(needed))} (+ optional energy)")
    index = {name: i for i, name in enumerate(layer_names or [])}
    try:
        layers = [int(r["layer"]) if r["layer"].strip().isdigit() else index[r["layer"]] for r in rows]
        w = [int(r["w_bits"]) for r in rows]
        a = [int(r["a_bits"]) for r in rows]
        lat = [float(r["latency"]) for r in rows]
        has_energy = "energy" in rows[0]
        energy = [float(r["energy"]) if r["energy"] not in ("", None) else np.nan for r in rows] \
            if has_energy else []
    except (KeyError, ValueError) as error:
        raise DataFormatError(f"{path}: bad row ({error}); layer must be an index or a known layer name") from error
    if min(w) < 1 or min(a) < 1 or min(layers) < 0:
        raise DataFormatError(f"{path}: bits must be >= 1 and layer indices >= 0")
    # The table is allocated from its largest bits and layer index: bound them first (a
    # crafted row of 10**9 bits would ask for terabytes).
    most_layers = len(layer_names) if layer_names else MAX_TABLE_LAYERS
    if max(w) > MAX_TABLE_BITS or max(a) > MAX_TABLE_BITS or max(layers) >= most_layers:
        raise DataFormatError(f"{path}: bits must be at most {MAX_TABLE_BITS} and layer indices below "
                              f"{most_layers} (got bits up to {max(max(w), max(a))}, layer {max(layers)})")
    _check_costs(path, "latency", lat)
    if has_energy:
        _check_costs(path, "energy", [v for v in energy if not np.isnan(v)])
    shape = (max(layers) + 1, max(w), max(a))
    latency = np.full(shape, np.nan)
    latency[layers, np.subtract(w, 1), np.subtract(a, 1)] = lat
    energy_table = None
    if has_energy:
        energy_table = np.full(shape, np.nan)
        energy_table[layers, np.subtract(w, 1), np.subtract(a, 1)] = energy
    return latency, energy_table


def lookup_costs(specs: Sequence[LayerSpec], params: Mapping[str, Any], max_bits: int
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(cycles, latency_ms, energy_uj), each [L, max_bits, max_bits], from the profile's table.

    Cells beyond the table's bit range are NaN; cycles are NaN for a table in ms without
    a clock.
    """
    path = Path(params["table"])
    mismatch = check_measured_on_this_machine(dict(params), f"lookup table {path}")
    if mismatch is not None:  # still usable (the ranking may carry over), but say so
        warnings.warn(mismatch, MeasuredElsewhereWarning, stacklevel=2)
    latency, energy = read_table(path, [s.name for s in specs])
    if latency.shape[0] != len(specs):
        raise DataFormatError(f"lookup table {path} has {latency.shape[0]} layers but the model "
                              f"has {len(specs)} quantizable layers")
    shape = (len(specs), max_bits, max_bits)
    w_n, a_n = min(latency.shape[1], max_bits), min(latency.shape[2], max_bits)
    values = np.full(shape, np.nan)
    values[:, :w_n, :a_n] = latency[:, :w_n, :a_n]
    clock = params.get("clock_mhz")
    if params.get("unit", "cycles") == "cycles":
        cycles = values
        # profile validation requires clock_mhz for a table in cycles
        latency_ms = values / (float(cast(float, clock)) * 1e3)
    else:
        latency_ms = values
        cycles = values * float(clock) * 1e3 if clock else np.full(shape, np.nan)
    energy_uj = np.full(shape, np.nan)
    if energy is not None:
        energy_uj[:, :w_n, :a_n] = energy[:, :w_n, :a_n] * _ENERGY_TO_UJ[params.get("energy_unit", "uJ")]
    lo = int(params.get("min_bits", 1)) - 1
    hi = int(params.get("max_bits", max_bits))
    if np.isnan(values[:, lo:hi, lo:hi]).any():
        raise DataFormatError(f"lookup table {path} lacks entries inside the profile's bit range "
                              f"{lo + 1}..{hi}")
    logger.debug("lookup table %s: %d layers, %dx%d bits", path, *latency.shape)
    return cycles, latency_ms, energy_uj
