"""Reader for the IDX format of MNIST (and Fashion-MNIST, KMNIST, ...).

An IDX file is: two zero bytes, one type byte, one byte with the number of dimensions,
then one big-endian uint32 per dimension, then the data in C order, big-endian.
"""

from __future__ import annotations

import gzip
import zlib
from pathlib import Path

import numpy as np

from haq_rl.errors import DataFormatError

# IDX type byte -> numpy dtype (big-endian, as the format prescribes).
IDX_DTYPES: dict[int, np.dtype] = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}

IDX_IMAGES_MAGIC = 0x00000803  # uint8, 3 dimensions
IDX_LABELS_MAGIC = 0x00000801  # uint8, 1 dimension


def _read_bytes(path: Path) -> bytes:
    """Return the raw bytes of ``path``, gunzipping files that end in ``.gz``."""
    if path.suffix != ".gz":
        return path.read_bytes()
    try:
        with gzip.open(path, "rb") as fh:
            return fh.read()
    except (OSError, EOFError, zlib.error) as exc:
        raise DataFormatError(f"{path}: not a readable gzip file of an IDX array ({exc})") from exc


def read_idx(path: str | Path, expected_magic: int | None = None) -> np.ndarray:
    """Parse one IDX file (optionally ``.gz``) into a numpy array in native byte order.

    Args:
        path: the file.
        expected_magic: when given, the 4-byte magic number the file must start with
            (``IDX_IMAGES_MAGIC`` or ``IDX_LABELS_MAGIC``); catches swapped file names.

    Raises:
        DataFormatError: bad magic number, unknown type byte, or a size that disagrees
            with the header (truncated or padded file).
    """
    path = Path(path)
    raw = _read_bytes(path)
    if len(raw) < 4:
        raise DataFormatError(f"{path}: truncated IDX file ({len(raw)} bytes, no 4-byte header)")
    magic = int.from_bytes(raw[:4], "big")
    type_code, ndim = raw[2], raw[3]
    if raw[0] != 0 or raw[1] != 0 or type_code not in IDX_DTYPES or ndim == 0:
        raise DataFormatError(
            f"{path}: bad IDX magic number 0x{magic:08X} (not an IDX file; expected 0x0000TTDD "
            "with type TT in 08/09/0B/0C/0D/0E)"
        )
    if expected_magic is not None and magic != expected_magic:
        raise DataFormatError(
            f"{path}: IDX magic number 0x{magic:08X}, expected 0x{expected_magic:08X} for this file"
        )
    header_end = 4 + 4 * ndim
    if len(raw) < header_end:
        raise DataFormatError(f"{path}: truncated IDX header ({len(raw)} bytes, need {header_end})")
    dims = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    dtype = IDX_DTYPES[type_code]
    expected = int(np.prod(dims, dtype=np.int64)) * dtype.itemsize
    found = len(raw) - header_end
    if found != expected:
        what = "truncated" if found < expected else "has trailing bytes"
        raise DataFormatError(
            f"{path}: IDX file {what}: header says shape {dims} ({expected} data bytes), "
            f"found {found}"
        )
    data = np.frombuffer(raw, dtype=dtype, offset=header_end).reshape(dims)
    # Native byte order and a writable copy, so torch.from_numpy works later.
    return data.astype(dtype.newbyteorder("="), copy=True)


def write_idx(path: str | Path, array: np.ndarray) -> None:
    """Write ``array`` as an IDX file (``.gz`` when the name ends so); used by tests and tools."""
    path = Path(path)
    codes = {np.dtype(v).newbyteorder("=").str: k for k, v in IDX_DTYPES.items()}
    native = np.asarray(array)
    key = native.dtype.newbyteorder("=").str
    if key not in codes:
        raise ValueError(f"dtype {native.dtype} has no IDX type code")
    code = codes[key]
    header = bytes([0, 0, code, native.ndim]) + b"".join(
        int(d).to_bytes(4, "big") for d in native.shape
    )
    payload = header + native.astype(IDX_DTYPES[code], copy=False).tobytes(order="C")
    if path.suffix == ".gz":
        with gzip.open(path, "wb") as fh:
            fh.write(payload)
    else:
        path.write_bytes(payload)
