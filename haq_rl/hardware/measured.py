"""A measured hardware profile: each quantizable layer timed alone in onnxruntime on this CPU.

``haq-rl profile --measure ort-cpu`` builds every layer of the model twice, from its
:class:`LayerSpec` alone (no torch): as the float Conv/Gemm and as the fused integer form
the ``--runtime ort`` export runs in its default ``portable`` form (UINT8 input, INT32
bias, UINT8 output: QLinearConv / QGemm; weights below 8 bits as INT8 within +-63, 8-bit
weights as UINT8, which onnxruntime runs with another kernel: both are timed), plus the
INT8 ``Clip`` that holds a sub-8-bit activation on its grid. Timings are medians of ``repeats`` runs after warm-up, one thread, less the
time of a session that only copies the same input (the per-call overhead, which the whole
model pays once and not once per layer).

onnxruntime has no CPU kernel below 8 bits for these layers, so a weight width below 8
costs what its INT8 container costs, and an activation width below 8 costs the container
plus the clamp: the table is honest that bits below 8 buy size, not speed, here.

The result is an ordinary lookup profile (``lookup.py``): a CSV table in ms with the
float time as an extra column, and a YAML that names the machine and the onnxruntime
version and the CPU's instruction set (VNNI or not changes the integer kernels). Loading it
on another machine, version or instruction set warns, naming both. numpy only at
import time; onnx and onnxruntime are imported when measuring.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import platform
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from haq_rl.errors import ConfigError, MissingDependencyError
from haq_rl.fileio import write_text_atomic
from haq_rl.hardware.cpu import has_vnni, instruction_set
from haq_rl.hardware.layer_spec import LayerSpec

logger = logging.getLogger(__name__)

#: The measured targets ``--measure`` knows.
TARGETS = ("ort-cpu",)
TABLE_FILE = "table.csv"
#: The least a layer costs in the table (ms): a timing at or below the call overhead is noise.
_FLOOR_MS = 1e-4
PROFILE_FILE = "profile.yaml"
#: 2: each timing less the cost of calling onnxruntime at all (an Identity session on the
#: same input), which a whole model pays once and a table of layers timed alone would pay
#: once per layer. 3: 8-bit weights timed apart (UINT8, the portable export's form).
_FORMAT = 3


@dataclass(frozen=True)
class LayerTiming:
    """One layer's medians in ms: float, fused INT8 (weights below 8 bits), INT8 plus the sub-8-bit
    activation clamp, and fused with 8-bit weights (UINT8 in the portable form)."""

    float_ms: float
    int8_ms: float
    int8_clamped_ms: float
    int8_wide_ms: float


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


def _require_onnxruntime() -> tuple[Any, Any]:
    try:
        import onnx
        import onnxruntime
    except ImportError:
        raise MissingDependencyError("haq-rl profile --measure needs onnx and onnxruntime: "
                                     "pip install 'haq-rl[export]'") from None
    return onnx, onnxruntime


def _padding(spec: LayerSpec) -> tuple[int, int]:
    """Symmetric padding that gives the spec's output size (torch's floor((in + 2p - k) / s) + 1)."""
    pads = []
    for size_in, size_out in ((spec.in_h, spec.out_h), (spec.in_w, spec.out_w)):
        needed = (size_out - 1) * spec.stride + spec.kernel - size_in
        pads.append(max(0, (needed + 1) // 2))
    return pads[0], pads[1]


def layer_model(spec: LayerSpec, batch: int, integer: bool, clamp: bool = False,
                wide: bool = False) -> tuple[bytes, np.ndarray]:
    """The ONNX model of one layer alone and an input for it (random weights: timing only).

    ``wide``: 8-bit weights, stored as the portable export stores them (UINT8, zero point 128);
    otherwise weights below 8 bits (INT8 levels within +-63).
    """
    onnx, _ = _require_onnxruntime()
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    conv = spec.kind != "linear"
    if conv:
        weight_shape = [spec.out_channels, spec.in_channels // spec.groups, spec.kernel, spec.kernel]
        input_shape = [batch, spec.in_channels, spec.in_h, spec.in_w]
        pad_h, pad_w = _padding(spec)
        attributes: dict[str, Any] = {"strides": [spec.stride] * 2, "pads": [pad_h, pad_w, pad_h, pad_w], "group": spec.groups,
                      "kernel_shape": [spec.kernel] * 2}
        op = "Conv"
    else:
        weight_shape = [spec.out_channels, spec.in_channels]
        # A Linear on tokens (in_h x in_w positions) multiplies every position's row.
        input_shape = [batch * max(1, spec.in_h * spec.in_w), spec.in_channels]
        attributes = {"transB": 1}
        op = "Gemm"
    weight = rng.standard_normal(weight_shape).astype(np.float32) * 0.05
    bias = rng.standard_normal(spec.out_channels).astype(np.float32) * 0.05
    nodes: list[Any] = []
    inits: list[Any] = []
    x: np.ndarray
    if not integer:
        inits += [numpy_helper.from_array(weight, "w"), numpy_helper.from_array(bias, "b")]
        nodes.append(helper.make_node(op, ["x", "w", "b"], ["y"], **attributes))
        x_type, y_type = TensorProto.FLOAT, TensorProto.FLOAT
        x = rng.standard_normal(input_shape).astype(np.float32)
    else:
        peak = 127 if wide else 63
        w_scale = (np.abs(weight).reshape(len(weight), -1).max(axis=1) / peak).astype(np.float32)
        levels = np.rint(weight / w_scale.reshape(-1, *([1] * (weight.ndim - 1)))).astype(np.int32)
        stored, zero = ((levels + 128).astype(np.uint8), np.full(len(levels), 128, np.uint8)) if wide \
            else (levels.astype(np.int8), np.zeros(len(levels), np.int8))
        inits += [
            numpy_helper.from_array(stored, "w_q"), numpy_helper.from_array(w_scale, "w_s"),
            numpy_helper.from_array(zero, "w_z"),
            numpy_helper.from_array(np.array(0.02, np.float32), "x_s"),
            numpy_helper.from_array(np.array(128, np.uint8), "x_z"),
            numpy_helper.from_array(np.rint(bias / (0.02 * w_scale)).astype(np.int32), "b_q"),
            numpy_helper.from_array((0.02 * w_scale).astype(np.float32), "b_s"),
            numpy_helper.from_array(np.zeros(len(levels), np.int32), "b_z"),
            numpy_helper.from_array(np.array(0.05, np.float32), "y_s"),
            numpy_helper.from_array(np.array(0, np.uint8), "y_z"),
        ]
        nodes += [
            helper.make_node("DequantizeLinear", ["x", "x_s", "x_z"], ["x_dq"]),
            helper.make_node("DequantizeLinear", ["w_q", "w_s", "w_z"], ["w_dq"], axis=0),
            helper.make_node("DequantizeLinear", ["b_q", "b_s", "b_z"], ["b_dq"], axis=0),
            helper.make_node(op, ["x_dq", "w_dq", "b_dq"], ["y_f"], **attributes),
            helper.make_node("QuantizeLinear", ["y_f", "y_s", "y_z"], ["y_q" if clamp else "y"]),
        ]
        if clamp:  # a sub-8-bit activation: the integer clamp to its 2^bits levels
            inits += [numpy_helper.from_array(np.array(0, np.uint8), "lo"),
                      numpy_helper.from_array(np.array(15, np.uint8), "hi")]
            nodes.append(helper.make_node("Clip", ["y_q", "lo", "hi"], ["y"]))
        x_type, y_type = TensorProto.UINT8, TensorProto.UINT8
        x = rng.integers(0, 256, input_shape, dtype=np.uint8)
    graph = helper.make_graph(nodes, spec.name, [helper.make_tensor_value_info("x", x_type, input_shape)],
                              [helper.make_tensor_value_info("y", y_type, None)], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21)])
    model.ir_version = min(model.ir_version, 10)
    buffer = io.BytesIO()
    onnx.save(model, buffer)
    return buffer.getvalue(), x


def call_overhead_model(input_shape: Sequence[int], integer: bool) -> tuple[bytes, np.ndarray]:
    """An Identity session on a layer's input: what one ``session.run`` costs without the layer."""
    onnx, _ = _require_onnxruntime()
    from onnx import TensorProto, helper

    rng = np.random.default_rng(0)
    x_type = TensorProto.UINT8 if integer else TensorProto.FLOAT
    x = rng.integers(0, 256, list(input_shape), dtype=np.uint8) if integer \
        else rng.standard_normal(list(input_shape)).astype(np.float32)
    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "overhead",
                              [helper.make_tensor_value_info("x", x_type, list(input_shape))],
                              [helper.make_tensor_value_info("y", x_type, None)])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21)])
    model.ir_version = min(model.ir_version, 10)
    buffer = io.BytesIO()
    onnx.save(model, buffer)
    return buffer.getvalue(), x


def median_ms(session: Any, feed: dict[str, np.ndarray], repeats: int, warmup: int) -> float:
    """Median wall time of ``session.run`` in ms after ``warmup`` runs."""
    for _ in range(warmup):
        session.run(None, feed)
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        session.run(None, feed)
        times.append(1000 * (time.perf_counter() - started))
    return statistics.median(times)


def _session(onnxruntime: Any, data: bytes) -> Any:
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = 1  # pinned: a table must not depend on what else the machine runs
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    return onnxruntime.InferenceSession(data, options, providers=["CPUExecutionProvider"])


def time_layer(spec: LayerSpec, batch: int, repeats: int, warmup: int) -> LayerTiming:
    """Time one layer alone: float, fused INT8, fused INT8 plus the clamp, fused with 8-bit weights,
    each less the call overhead."""
    _, onnxruntime = _require_onnxruntime()
    overhead: dict[bool, float] = {}
    results = []
    for integer, clamp, wide in ((False, False, False), (True, False, False), (True, True, False),
                                 (True, False, True)):
        data, x = layer_model(spec, batch, integer, clamp, wide)
        if integer not in overhead:  # once per input type (float, UINT8), on this layer's input shape
            identity, same = call_overhead_model(x.shape, integer)
            overhead[integer] = median_ms(_session(onnxruntime, identity), {"x": same}, repeats, warmup)
        spent = median_ms(_session(onnxruntime, data), {"x": x}, repeats, warmup) - overhead[integer]
        results.append(max(spent, _FLOOR_MS))
    return LayerTiming(*results)


def cache_key(specs: Sequence[LayerSpec], batch: int, repeats: int) -> str:
    """What a table depends on: the layer shapes, batch, repeats, machine and onnxruntime version."""
    shapes = [(s.kind, s.in_channels, s.out_channels, s.kernel, s.stride, s.groups, s.in_h, s.in_w, s.out_h, s.out_w)
              for s in specs]
    text = json.dumps([_FORMAT, shapes, batch, repeats, machine_description(), onnxruntime_version(),
                       instruction_set()])
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def measure_profile(specs: Sequence[LayerSpec], batch: int, folder: Path, *, model_name: str,
                    repeats: int = 20, warmup: int = 3, max_bits: int = 8,
                    progress: Callable[[int], None] | None = None) -> Path:
    """Measure every layer and write ``folder/profile.yaml`` + ``folder/table.csv``; returns the YAML.

    Both files are written atomically, the table first: a killed run leaves no profile that
    points at a partial table.
    """
    if repeats < 1 or warmup < 0 or batch < 1:
        raise ConfigError(f"repeats={repeats} (>= 1), warmup={warmup} (>= 0), batch={batch} (>= 1)")
    _require_onnxruntime()
    lines = ["layer,w_bits,a_bits,latency,float_latency"]
    for index, spec in enumerate(specs):
        timing = time_layer(spec, batch, repeats, warmup)
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
    machine, version = machine_description(), onnxruntime_version()
    profile = "\n".join([
        f"# Measured by haq-rl profile --measure ort-cpu: {model_name}, {len(specs)} layers, batch {batch},",
        f"# medians of {repeats} runs after {warmup} warm-up runs, onnxruntime on 1 thread.",
        "name: ort-cpu-measured",
        "description: >",
        f"  onnxruntime {version} CPU (1 thread) on {machine}; {model_name} at batch {batch},",
        "  each layer timed alone as fused INT8 (QLinearConv / QGemm); bits below 8 cost the INT8 container",
        "  (8-bit weights as UINT8, the portable export's form).",
        "model: lookup",
        "min_bits: 1",
        f"max_bits: {max_bits}",
        "units: {latency: ms}",
        "params:",
        f"  table: {TABLE_FILE}",
        "  unit: ms",
        f"  batch: {batch}",
        f"  machine: {json.dumps(machine)}",
        f"  onnxruntime: {json.dumps(version)}",
        f"  instruction_set: {json.dumps(instruction_set())}",
        "",
    ])
    return write_text_atomic(folder / PROFILE_FILE, profile)


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


#: Batch of a measured table built for a task (one image per call: latency, not throughput).
TASK_BATCH = 1
#: Runs per median of a measured table; ``haq-rl profile --measure`` defaults to the same,
#: so an env on a measured target and the command share one cached table.
DEFAULT_REPEATS = 20


def is_measured_target(hardware: str) -> bool:
    """Whether a task's ``hardware`` names a target measured on this machine (``ort-cpu``)."""
    return hardware in TARGETS


def cached_measured_profile(target: str, specs: Sequence[LayerSpec], label: str, *,
                            repeats: int = DEFAULT_REPEATS, folder: Path | None = None,
                            progress: bool = True) -> tuple[Path, bool]:
    """The measured profile of these layers on this machine, and whether it was measured now
    (False: the cached one was reused).

    The cache folder is keyed by the layer shapes, batch, repeats, machine and onnxruntime
    version, so a rerun on the same machine reuses the table and another machine measures
    its own. The work runs under the cache lock (a second process waits, then reuses it);
    the key file is written last, so a killed run is measured again, never half read.
    """
    if not is_measured_target(target):
        raise ConfigError(f"measured target {target!r}: the measurable targets are {', '.join(TARGETS)}")
    if repeats < 1:
        raise ConfigError(f"repeats={repeats} must be positive")
    if not specs:
        raise ConfigError("a measured profile needs at least one quantizable layer")
    batch = specs[0].batch
    key = cache_key(specs, batch, repeats)
    from haq_rl.cache import cache_dir, cache_lock

    if folder is None:  # named by the key alone: the CLI, a task and a report share one table
        folder = cache_dir("measured", target, key)
    profile, stamp = folder / PROFILE_FILE, folder / "key.txt"
    if _reusable(profile, stamp, key, specs):
        return profile, False
    with cache_lock(folder.parent / f"{folder.name}.lock", f"timing {label} on {target}"):
        if _reusable(profile, stamp, key, specs):  # measured by the process we waited for
            return profile, False
        from tqdm.auto import tqdm

        with tqdm(total=len(specs), desc=f"timing layers on {target}", unit="layer",
                  disable=not progress or None) as bar:
            measure_profile(specs, batch, folder, model_name=label, repeats=repeats,
                            progress=lambda done: bar.update(done - bar.n))
        write_text_atomic(stamp, key + "\n")  # last: a profile without its key is measured again
    return profile, True


def _reusable(profile: Path, stamp: Path, key: str, specs: Sequence[LayerSpec]) -> bool:
    """The cached measured profile has this key and costs the layers; a damaged one is measured again."""
    from haq_rl.errors import HaqError
    from haq_rl.hardware.cost_table import CostTable
    from haq_rl.hardware.profile import load_profile

    try:
        if not (profile.is_file() and stamp.is_file()) or stamp.read_bytes().strip() != key.encode():
            return False
        CostTable.build(specs, load_profile(profile))
    except (HaqError, OSError) as error:
        logger.warning("measuring again: the cached profile %s is unusable (%s)", profile, error)
        return False
    return True
