"""Which machine and onnxruntime a measured table belongs to, and the warning when it is used elsewhere.

numpy-free and onnxruntime-free: the version is read from the installed package's metadata.
"""

from __future__ import annotations

import platform
from pathlib import Path
from typing import Any

from haq_rl.hardware.cpu import has_vnni, instruction_set


def onnxruntime_version() -> str | None:
    """The installed onnxruntime's version, without importing it (None when absent)."""
    from importlib import metadata

    for name in ("onnxruntime", "onnxruntime-gpu"):
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return None


def machine_description() -> str:
    """CPU model, core count and OS of this machine, as one line."""
    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace").splitlines():
            if line.lower().startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import os

    return f"{model}, {os.cpu_count()} logical CPUs, {platform.system()} {platform.machine()}"


def check_measured_on_this_machine(params: dict[str, Any], where: str) -> str | None:
    """A warning line when a measured profile comes from another machine or onnxruntime version, else None."""
    machine, version, isa = params.get("machine"), params.get("onnxruntime"), params.get("instruction_set")
    if machine is None and version is None:
        return None
    here, here_version, here_isa = machine_description(), onnxruntime_version(), instruction_set()
    differences = []
    if isinstance(isa, str) and has_vnni(isa) != has_vnni(here_isa):
        differences.append(f"instruction set {isa!r} (this one: {here_isa!r}; with and without VNNI onnxruntime "
                           "runs other integer kernels)")
    if machine is not None and machine != here:
        differences.append(f"machine {machine!r} (this one: {here!r})")
    if version is not None and version != here_version:
        differences.append(f"onnxruntime {version} (this one: {here_version or 'not installed'})")
    if not differences:
        return None
    return f"{where} was measured on another setup: {'; '.join(differences)}; re-measure with haq-rl profile --measure"
