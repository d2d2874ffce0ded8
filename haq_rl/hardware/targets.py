"""The hardware targets as one table: simulated, lookup and measured.

A task's ``hardware`` (``--hw``) is one of three kinds:

- **simulated**: a profile YAML (shipped name or path) whose cost model computes each
  layer's cost from the accelerator's constants (BISMO, BitFusion) or a proxy (BOPs, size);
- **lookup**: a profile YAML naming a table of per-layer costs, published or measured;
- **measured**: a target name timed on this machine the first time a model needs it
  (``ort-cpu``): its layers are built as the export writes them, timed, cached, and the result
  is an ordinary lookup profile.

Each row names its entry points as ``"module:function"`` strings, imported only when a
target is measured (as search/methods.py does for methods): so profile.py and lookup.py need
no import of the measuring modules, which import the cost table back. Adding a measured
target is one row here (its names, the graphs it times, its batch) and, for another
runtime, the two graph builders its row names; adding a simulated cost model is a row's
``cost_models`` entry plus its function in cost_table.py.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class HardwareTarget:
    """One kind of hardware target and what makes it work."""

    kind: str
    summary: str
    #: the profile ``model:`` values of this kind (a measured target writes a ``lookup`` profile)
    cost_models: tuple[str, ...] = ()
    #: the names a task takes as is (``--hw ort-cpu``); profile kinds take a shipped name or a YAML path
    names: tuple[str, ...] = ()
    #: batch a task's layers are timed at (measured: one image, latency rather than throughput)
    batch: int = 1
    #: runs per median of a table built for a task; ``haq-rl profile --measure`` defaults to the same,
    #: so an env on a measured target and the command share one cached table
    repeats: int = 20
    #: ``"module:function"``: ``(target, layers, label) -> (profile path, measured now)``, the cached table
    measure: str = ""
    #: ``"module:function"``: ``(spec, batch, integer, clamp, wide) -> (ONNX bytes, input)``, one layer alone
    layer_model: str = ""
    #: ``"module:function"``: ``(input_shape, integer) -> (ONNX bytes, input)``, the per-call overhead
    overhead_model: str = ""

    def entry(self, field_name: str) -> Any:
        """The function one of this row's ``"module:function"`` fields names, imported now."""
        module, _, function = getattr(self, field_name).partition(":")
        return getattr(importlib.import_module(module), function)


#: Every kind, in the order docs and errors list them.
TARGET_TABLE: dict[str, HardwareTarget] = {row.kind: row for row in (
    HardwareTarget("simulated", "a cost model computed from an accelerator's constants, or a proxy",
                   cost_models=("bismo", "bitfusion", "bops", "size")),
    HardwareTarget("lookup", "a table of per-layer costs, published or measured", cost_models=("lookup",)),
    # The measured layers are the export's own integer pattern (export/layer_pattern.py), so
    # the table times what `haq-rl export --runtime ort` writes; a string, not an import:
    # hardware sits below export in the layering and loads it only when timing.
    HardwareTarget("measured", "timed on this machine in onnxruntime (CPU, 1 thread), as the export writes each layer",
                   names=("ort-cpu",), measure="haq_rl.hardware.measured_cache:cached_measured_profile",
                   layer_model="haq_rl.export.layer_pattern:layer_model",
                   overhead_model="haq_rl.export.layer_pattern:call_overhead_model"),
)}
#: The ``model:`` values a profile YAML may name.
COST_MODELS = tuple(model for row in TARGET_TABLE.values() for model in row.cost_models)
#: The measured target names (``--hw`` of a task, ``haq-rl profile --measure``).
MEASURED_TARGETS = TARGET_TABLE["measured"].names


def measured_target(hardware: str) -> HardwareTarget | None:
    """The measured row when ``hardware`` names a target timed on this machine, else None (a profile)."""
    return next((row for row in TARGET_TABLE.values() if hardware in row.names), None)

