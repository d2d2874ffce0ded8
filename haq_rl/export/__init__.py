"""A deployable model out: ONNX in QDQ form with the searched bits, verified in onnxruntime.

``export_onnx`` and ``ExportResult`` load on first use (PEP 562): the measured hardware target
imports ``haq_rl.export.layer_pattern`` (numpy and onnx only) without torch or the fine-tune.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from haq_rl.export.onnx_qdq import ExportResult, export_onnx

__all__ = ["ExportResult", "export_onnx"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from haq_rl.export import onnx_qdq

        return getattr(onnx_qdq, name)
    raise AttributeError(f"module 'haq_rl.export' has no attribute {name!r}")
