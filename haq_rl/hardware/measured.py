"""A measured hardware profile: each quantizable layer timed alone in onnxruntime on this CPU.

``haq-rl profile --measure ort-cpu`` builds every layer of the model, from its
:class:`LayerSpec` alone (no torch), with the graph builders its row in ``targets.py`` names:
the float Conv/Gemm and the export's own integer pattern (``haq_rl.export.layer_pattern``:
the ``--runtime ort`` export's default ``portable`` form, UINT8 input, INT32 bias, UINT8
output: QLinearConv / QGemm; weights below 8 bits as INT8 within +-63, 8-bit weights as
UINT8, which onnxruntime runs with another kernel: both are timed), plus the integer
``Clip`` that holds a sub-8-bit activation on its grid. Timings (``ort_timing``) are medians
of ``repeats`` runs after warm-up, one thread, less the time of a session that only copies
the same input (the per-call overhead, which the whole model pays once and not once per layer).

onnxruntime has no CPU kernel below 8 bits for these layers, so a weight width below 8
costs what its INT8 container costs, and an activation width below 8 costs the container
plus the clamp: the table is honest that bits below 8 buy size, not speed, here.

The result is an ordinary lookup profile (``lookup.py``): a CSV table in ms with the
float time as an extra column, and a YAML (``yaml.safe_dump``) that names the machine, the
onnxruntime version and the CPU's instruction set (VNNI or not changes the integer kernels);
``machine.py`` warns when it is loaded on another setup. Caching is ``measured_cache.py``'s.
numpy only at import time; onnx and onnxruntime are imported when measuring.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path

import yaml

from haq_rl.errors import ConfigError
from haq_rl.fileio import write_text_atomic
from haq_rl.hardware.cpu import instruction_set
from haq_rl.hardware.layer_spec import LayerSpec
from haq_rl.hardware.machine import machine_description, onnxruntime_version
from haq_rl.hardware.ort_timing import require_onnxruntime, time_layer
from haq_rl.hardware.targets import MEASURED_TARGETS, measured_target

logger = logging.getLogger(__name__)

TABLE_FILE = "table.csv"
PROFILE_FILE = "profile.yaml"


def measure_profile(specs: Sequence[LayerSpec], batch: int, folder: Path, *, model_name: str,
                    repeats: int = 20, warmup: int = 3, max_bits: int = 8,
                    progress: Callable[[int], None] | None = None, target: str = "ort-cpu") -> Path:
    """Measure every layer on ``target`` and write ``folder/profile.yaml`` + ``folder/table.csv``; returns the YAML.

    Both files are written atomically, the table first: a killed run leaves no profile that
    points at a partial table.
    """
    row = measured_target(target)
    if row is None:
        raise ConfigError(f"measured target {target!r}: the measurable targets are {', '.join(MEASURED_TARGETS)}")
    if repeats < 1 or warmup < 0 or batch < 1:
        raise ConfigError(f"repeats={repeats} (>= 1), warmup={warmup} (>= 0), batch={batch} (>= 1)")
    require_onnxruntime()
    layer_model, overhead_model = row.entry("layer_model"), row.entry("overhead_model")
    lines = ["layer,w_bits,a_bits,latency,float_latency"]
    for index, spec in enumerate(specs):
        timing = time_layer(spec, batch, repeats, warmup, layer_model, overhead_model)
        clamp_ms = max(0.0, timing.int8_clamped_ms - timing.int8_ms)
        for w_bits in range(1, max_bits + 1):
            for a_bits in range(1, max_bits + 1):
                cost = timing.int8_wide_ms if w_bits >= 8 else timing.int8_ms
                cost += clamp_ms if a_bits < 8 else 0.0
                lines.append(f"{spec.name},{w_bits},{a_bits},{cost:.6g},{timing.float_ms:.6g}")
        logger.debug("%s: float %.4f ms, int8 %.4f ms", spec.name, timing.float_ms, timing.int8_ms)
        if progress is not None:
            progress(index + 1)
    write_text_atomic(folder / TABLE_FILE, "\n".join(lines) + "\n")
    return write_text_atomic(folder / PROFILE_FILE, _profile_yaml(target, model_name, len(specs), batch, repeats,
                                                                  warmup, max_bits))


def _profile_yaml(target: str, model_name: str, layers: int, batch: int, repeats: int, warmup: int,
                  max_bits: int) -> str:
    """The lookup profile of a measured table: a comment saying how it was timed, then the YAML."""
    machine, version = machine_description(), onnxruntime_version()
    label = " ".join(str(model_name).split())  # one line: it also goes into a comment
    profile = {
        "name": f"{target}-measured",
        "description": (f"onnxruntime {version} CPU (1 thread) on {machine}; {label} at batch {batch}, each layer "
                        "timed alone as fused INT8 (QLinearConv / QGemm); bits below 8 cost the INT8 container "
                        "(8-bit weights as UINT8, the portable export's form)."),
        "model": "lookup",
        "min_bits": 1,
        "max_bits": max_bits,
        "units": {"latency": "ms"},
        "params": {"table": TABLE_FILE, "unit": "ms", "batch": batch, "machine": machine, "onnxruntime": version,
                   "instruction_set": instruction_set()},
    }
    header = (f"# Measured by haq-rl profile --measure {target}: {label}, {layers} layers, batch {batch},\n"
              f"# medians of {repeats} runs after {warmup} warm-up runs, onnxruntime on 1 thread.\n")
    return header + yaml.safe_dump(profile, sort_keys=False, width=100)
