"""The checks an exported model passes before it is written: onnxruntime fuses what the runtime
promises, and agrees with PyTorch on the test split."""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path
from typing import Any

import torch

from haq_rl.errors import ExportMismatchError
from haq_rl.export.integer_form import INTEGER_KERNELS
from haq_rl.export.onnx_graph import fused_kernels
from haq_rl.hardware.cpu import has_vnni, instruction_set
from haq_rl.task.task import Task

logger = logging.getLogger(__name__)

#: The least share of test images on which the exported model must pick PyTorch's class, and the
#: largest accuracy gap in points: beyond either, the file is not written (``allow_mismatch``
#: overrides). At few bits the integer form's requantization may round a handful of outputs the
#: other way; a systematic error (a saturating kernel) moves thousands.
MIN_AGREEMENT = 0.99
MAX_ACCURACY_GAP = 0.5


def integer_kernel_count(kernels: dict[str, int]) -> int:
    """How many fused integer Conv/Gemm/MatMul kernels an optimized graph's op counts hold."""
    return sum(count for op, count in kernels.items() if op in INTEGER_KERNELS and op != "QLinearAdd")


def check_fused(data: bytes, target: Path, layers: int) -> dict[str, int]:
    """onnxruntime's optimized graph (``optimized_model_filepath``): which integer kernels it runs."""
    with tempfile.TemporaryDirectory(prefix=".haq-optimized-", dir=target.parent) as folder:
        kernels = fused_kernels(data, str(Path(folder) / "optimized.onnx"))
    fused = integer_kernel_count(kernels)
    if fused < layers:
        logger.warning("onnxruntime fused %d of %d quantized layers into integer kernels (%s)", fused, layers,
                       ", ".join(f"{op} {count}" for op, count in sorted(kernels.items())))
    return kernels


def check_agreement(onnxruntime: Any, data: bytes, reference: torch.nn.Module, task: Task, isa: str,
                    allow_mismatch: bool) -> tuple[float, float, float]:
    """onnxruntime's and PyTorch's test accuracy and their top-1 agreement; ExportMismatchError beyond
    the tolerance (``MIN_AGREEMENT``, ``MAX_ACCURACY_GAP``) unless ``allow_mismatch``, then a warning."""
    onnx_accuracy, torch_accuracy, agreement = _verify(onnxruntime, data, reference, task)
    if agreement < MIN_AGREEMENT or abs(onnx_accuracy - torch_accuracy) > MAX_ACCURACY_GAP:
        line = (f"onnxruntime agrees with PyTorch on {100 * agreement:.1f}% of test images (onnxruntime "
                f"{onnx_accuracy:.2f}%, PyTorch {torch_accuracy:.2f}%; tolerance {100 * MIN_AGREEMENT:.0f}% and "
                f"{MAX_ACCURACY_GAP} points) on this CPU ({instruction_set()})")
        if not allow_mismatch:
            hint = " or --isa portable" if isa == "vnni" and not has_vnni() else ""
            raise ExportMismatchError(f"{line}; nothing written (--allow-mismatch writes it anyway{hint}; "
                                      "--runtime reference is the exact simulation)")
        logger.warning("%s; written anyway (--allow-mismatch)", line)
    return onnx_accuracy, torch_accuracy, agreement


def _verify(onnxruntime: Any, data: bytes, reference: torch.nn.Module, task: Task) -> tuple[float, float, float]:
    """onnxruntime's and PyTorch's test-split accuracy, and their top-1 agreement."""
    from haq_rl.quant.outputs import logits_of

    session = onnxruntime.InferenceSession(data, providers=["CPUExecutionProvider"])
    inputs, labels = task.splits.test.tensors
    onnx_top, torch_top = [], []
    with torch.no_grad():
        for start in range(0, len(labels), 256):
            batch = inputs[start:start + 256]
            onnx_top.append(torch.from_numpy(session.run(None, {"input": batch.numpy()})[0]).argmax(1))
            torch_top.append(logits_of(reference(batch.to(task.device))).argmax(1).cpu())
    onnx_pred, torch_pred = torch.cat(onnx_top), torch.cat(torch_top)
    return (100.0 * float((onnx_pred == labels).float().mean()), 100.0 * float((torch_pred == labels).float().mean()),
            float((onnx_pred == torch_pred).float().mean()))
