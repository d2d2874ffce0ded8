"""What the CPU that runs onnxruntime can do: the facts an integer model's exactness depends on."""

from __future__ import annotations

import functools
import platform
from pathlib import Path

#: x86 flags (as /proc/cpuinfo spells them) of the instructions that multiply UINT8 x INT8
#: and accumulate in 32 bits (vpdpbusd). Without one of them, onnxruntime's U8S8 kernels use
#: vpmaddubsw, whose 16-bit pair sums saturate on full-range 8-bit weights.
VNNI_FLAGS = ("avx512_vnni", "avx_vnni", "amx_int8")
#: The flags named in an instruction-set line, best first.
_REPORTED_FLAGS = ("amx_int8", "avx512_vnni", "avx_vnni", "avx512bw", "avx2", "sse4_1")


def _cpu_flags() -> set[str]:
    try:
        text = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return set()
    for line in text.splitlines():
        if line.lower().startswith(("flags", "features")):
            return set(line.split(":", 1)[1].split())
    return set()


@functools.lru_cache(maxsize=1)
def instruction_set() -> str:
    """This CPU's integer-matmul instruction sets, e.g. ``"x86_64: avx512_vnni avx512bw avx2"``
    or ``"x86_64: avx2"``; other architectures (or an unreadable /proc) give the machine name."""
    machine = platform.machine() or "unknown"
    flags = _cpu_flags()
    named = [flag for flag in _REPORTED_FLAGS if flag in flags]
    return f"{machine}: {' '.join(named)}" if named else machine


def has_vnni(isa_line: str | None = None) -> bool:
    """Whether ``isa_line`` (default: this CPU's :func:`instruction_set`) names a VNNI instruction."""
    line = instruction_set() if isa_line is None else isa_line
    return any(flag in line.split() for flag in VNNI_FLAGS)
