"""The export runtimes as one table: name -> how the reference QDQ graph becomes that runtime's form.

Every export starts from the same reference graph (``qdq_graph``): integer weights with a
per-channel DequantizeLinear, Clip -> QuantizeLinear -> DequantizeLinear on each quantized
layer's input. A runtime is one row: whether its weights may be INT4, the handler that rewrites
that graph in place for it (a ``"module:function"`` entry point, imported only when an export
runs it, as search/methods.py does for methods), whether onnxruntime must fuse its layers into
integer kernels (counted in the optimized model) and whether ``--isa`` shapes it. Adding a
runtime is one row here and one handler: ``handler(model, layers, task, isa) -> RuntimeForm``.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from haq_rl.errors import ConfigError


@dataclass
class RuntimeForm:
    """What a runtime's handler did to the reference graph (recorded in the metadata and the result)."""

    #: tensors quantized at a calibrated 8-bit grid where PyTorch does not
    calibrated_outputs: list[str] = field(default_factory=list)
    #: layers whose 8-bit weights are stored as UINT8 (U8U8 kernels)
    unsigned_weights: list[str] = field(default_factory=list)
    #: which CPUs the form is exact on, and why ('' when the form runs float kernels)
    isa_note: str = ""


@dataclass(frozen=True)
class Runtime:
    """One export runtime: its name (``--runtime``), its weight containers and its handler."""

    name: str
    #: one line for ``haq-rl export --help``
    summary: str
    #: weights of <= 4 bits stored as INT4 (from opset 21); otherwise every weight in an INT8 container
    int4_weights: bool
    #: ``"module:function"``: ``function(model, layers, task, isa) -> RuntimeForm`` rewrites the reference graph
    handler: str
    #: onnxruntime must run the quantized layers as integer kernels: counted in its optimized graph
    fuses: bool
    #: the form depends on ``--isa`` (``integer_form.ISAS``), recorded in the metadata
    isa_bound: bool

    def rewrite(self, model: Any, layers: list[str], task: Any, isa: str) -> RuntimeForm:
        """Run this runtime's handler on the reference graph ``model`` (in place)."""
        module, _, function = self.handler.partition(":")
        handler: Callable[..., RuntimeForm] = getattr(importlib.import_module(module), function)
        return handler(model, layers, task, isa)


#: The runtimes ``haq-rl export --runtime`` knows, in the order the CLI lists them.
RUNTIME_TABLE: dict[str, Runtime] = {row.name: row for row in (
    Runtime("reference", "exact simulation of the searched bits (INT4 weights, float kernels)",
            int4_weights=True, handler="haq_rl.export.qdq_graph:reference_form", fuses=False, isa_bound=False),
    Runtime("ort", "INT8 containers on the searched grids, fused integer kernels in onnxruntime",
            int4_weights=False, handler="haq_rl.export.integer_form:ort_form", fuses=True, isa_bound=True),
)}
RUNTIMES = tuple(RUNTIME_TABLE)


def runtime_named(name: str) -> Runtime:
    """The table's row for ``name``; ConfigError naming the runtimes otherwise."""
    if name not in RUNTIME_TABLE:
        raise ConfigError(f"runtime {name!r} must be one of {', '.join(RUNTIMES)}")
    return RUNTIME_TABLE[name]
