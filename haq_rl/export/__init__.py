"""A deployable model out: ONNX in QDQ form with the searched bits, verified in onnxruntime."""

from haq_rl.export.onnx_qdq import ExportResult, export_onnx

__all__ = ["ExportResult", "export_onnx"]
