"""Export a searched policy as an ONNX model in QDQ form, and check it in onnxruntime.

The float graph comes from ``torch.onnx.export`` of the model holding the quantized weight
values (BatchNorm kept as is). Then, for every quantized layer:

- its weight becomes an integer initializer at the searched width (INT4 for <= 4 bits
  where the opset has it, INT8 otherwise) and a per-output-channel ``DequantizeLinear``;
  the integers are the layer's exact levels (a width narrower than its container stays
  exact through the scale and the clamped levels);
- its input activation gets ``Clip`` (to the layer's clamped range) -> ``QuantizeLinear``
  -> ``DequantizeLinear`` with the calibrated or learned clip, in INT8 (non-negative
  inputs use zero point -128, so their 2^bits levels start at the bottom of the range).

In the reference form each quantized Conv/Gemm's float bias is a separate ``Add``: fed to
the Conv/Gemm, onnxruntime's QDQ optimizer would round it to INT32 at the step
``a_scale * w_scale``, which is coarse at 2-4 bits.

So the file computes what the fake-quantized PyTorch model computes. Supported: ``nn.Conv2d``,
``nn.Linear`` on 2-D inputs (``Gemm``) and on token inputs (attention projections,
transformer MLPs), which torch exports as ``Transpose`` -> ``MatMul`` and which are
rewritten as ``Reshape`` -> ``Gemm`` -> ``Reshape`` before quantization (onnxruntime 1.31
fails to load the QDQ form of the MatMul pattern); linear (not k-means) weights.

The export's jobs, one module each: ``source`` (the model at the policy), ``qdq_graph`` (the
reference graph), ``runtimes`` (the table of runtimes and the rewrite each one needs:
``integer_form`` for ``ort``), ``verify`` (fusion and agreement with PyTorch); this module runs
them in order and writes the file with its metadata.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from haq_rl import __version__
from haq_rl.errors import ConfigError, MissingDependencyError
from haq_rl.export.float_layers import FLOAT_WIDTHS, float_storage, keep_float, split_float_layers
from haq_rl.export.integer_form import ISAS
from haq_rl.export.onnx_graph import initializer_bytes
from haq_rl.export.qdq_graph import qdq_model
from haq_rl.export.runtimes import RUNTIMES, Runtime, RuntimeForm, runtime_named
from haq_rl.export.verify import check_agreement, check_fused, integer_kernel_count
from haq_rl.fileio import atomic_write, remove_stale_temps
from haq_rl.finetune import policy_costs
from haq_rl.finetune.policy_model import exportable_model
from haq_rl.hardware.cpu import instruction_set
from haq_rl.quant import QuantPolicy
from haq_rl.run.layout import FINETUNED_FILE
from haq_rl.run.lock import run_lock
from haq_rl.run.resolve import policy_source, policy_spec, task_for
from haq_rl.task.task import Task

logger = logging.getLogger(__name__)

#: The opset written by default: INT4/UINT4 in QuantizeLinear/DequantizeLinear need 21.
DEFAULT_OPSET = 21
__all__ = ["DEFAULT_OPSET", "RUNTIMES", "ExportResult", "export_onnx"]


@dataclass
class ExportResult:
    """An exported model: where it is, what it holds and how it scores."""

    path: Path
    finetuned: bool
    onnx_accuracy: float
    torch_accuracy: float
    agreement: float  # fraction of test images whose top-1 class both models agree on
    weight_bytes: int  # bytes of the quantized layers' weight initializers
    layers: int
    runtime: str = "reference"
    #: ops of onnxruntime's optimized graph (runtimes that fuse, ``ort``): QLinearConv, QGemm, ...
    kernels: dict[str, int] = field(default_factory=dict)
    #: tensors the ``ort`` form quantizes at a calibrated 8-bit grid where PyTorch does not
    calibrated_outputs: list[str] = field(default_factory=list)
    #: the instruction set the ``ort`` form was written for (``integer_form.ISAS``), and why
    isa: str = ""
    isa_note: str = ""
    #: layers whose 8-bit weights the ``portable`` form stores as UINT8 (U8U8 kernels)
    unsigned_weights: list[str] = field(default_factory=list)
    #: layers the policy keeps float (w_bits 16/32): float weights and kernels (``float_layers``)
    float_layers: list[str] = field(default_factory=list)

    @property
    def integer_kernels(self) -> int:
        """How many fused integer Conv/Gemm/MatMul kernels onnxruntime runs."""
        return integer_kernel_count(self.kernels)


def require_onnx() -> tuple[Any, Any]:
    try:
        import onnx
        import onnxruntime
    except ImportError:
        raise MissingDependencyError(
            "haq-rl export needs onnx and onnxruntime: pip install 'haq-rl[export]'") from None
    return onnx, onnxruntime


def export_onnx(source: str | Path, *, checkpoint: str | Path | None = None, out: str | Path | None = None,
                opset: int = DEFAULT_OPSET, force: bool = False, task: Task | None = None,
                runtime: str = "reference", isa: str = "portable", allow_mismatch: bool = False,
                model: str | None = None, weights: str | None = None) -> ExportResult:
    """Export a run's best policy (or a policy JSON) to ONNX, verify it, return the result.

    ``runtime="reference"`` writes the exact simulation of the searched bits;
    ``runtime="ort"`` the form onnxruntime runs as integer kernels (BatchNorm folded,
    Q/DQ on outputs too, every weight in an INT8 container on its searched grid).

    ``isa`` (``ort`` only) names the CPUs the integer form must be exact on: ``portable``
    (every x86 CPU; 8-bit weights run as U8U8 kernels) or ``vnni`` (CPUs with VNNI only;
    every weight INT8). See ``haq_rl.export.integer_form.ISAS``.

    ``checkpoint`` defaults to the run's finetuned.pt when there is one; otherwise the
    post-training quantized model is exported (with a warning). ``out`` defaults to
    ``model.onnx`` next to the policy; an existing file needs ``force``. The file is
    written atomically, and only when onnxruntime agrees with PyTorch (``MIN_AGREEMENT``,
    ``MAX_ACCURACY_GAP``) unless ``allow_mismatch``. ``model`` / ``weights`` name the model
    and its trained weights (``--model``, ``--weights``), needed for a policy JSON of your own model.

    Raises:
        ExportMismatchError: onnxruntime disagrees with PyTorch beyond the tolerance.
    """
    onnx, onnxruntime = require_onnx()
    if not 13 <= opset <= 23:
        raise ConfigError(f"opset={opset} must be between 13 and 23")
    row = runtime_named(runtime)
    if isa not in ISAS:
        raise ConfigError(f"isa {isa!r} must be one of {', '.join(ISAS)}")
    policy_path, out_dir, run_config = policy_source(source)
    target = Path(out) if out is not None else out_dir / "model.onnx"
    if target.is_dir():
        raise ConfigError(f"--out {target} is a folder; give the ONNX file's name, e.g. {target / 'model.onnx'}")
    if target.exists() and not force:
        raise ConfigError(f"{target} exists; pass --force to replace it")
    with run_lock(target.parent):  # one writer; a killed export leaves at most a temporary file
        remove_stale_temps(target.parent)
        return _export_locked(onnx, onnxruntime, policy_path, out_dir, run_config, target, checkpoint, opset, task,
                              row, isa, allow_mismatch, model, weights)


def _export_locked(onnx: Any, onnxruntime: Any, policy_path: Path, out_dir: Path, run_config: Path | None,
                   target: Path, checkpoint: str | Path | None, opset: int, task: Task | None,
                   runtime: Runtime, isa: str, allow_mismatch: bool, model_name: str | None,
                   weights: str | None) -> ExportResult:
    policy = QuantPolicy.from_json(policy_path)
    spec = policy_spec(policy, None, run_config, model=model_name, weights=weights)
    task = task_for(spec, task, budget=spec.budget)
    if checkpoint is None and (policy_path.parent / FINETUNED_FILE).is_file():
        checkpoint = policy_path.parent / FINETUNED_FILE
    built = build_model(onnx, task, policy, checkpoint, runtime, isa, opset)
    model, reference, quantized, floats, form = built.model, built.reference, built.quantized, built.floats, built.form
    data = model.SerializeToString()
    kernels = check_fused(data, target, len(quantized.layer_names)) if runtime.fuses else {}
    onnx_accuracy, torch_accuracy, agreement = check_agreement(onnxruntime, data, reference, task, isa,
                                                               allow_mismatch)
    atomic_write(target, lambda stream: stream.write(data))
    weight_bytes = sum(initializer_bytes(onnx, init) for init in model.graph.initializer
                       if init.name.endswith(".weight_q"))
    logger.info("wrote %s (%s runtime): onnxruntime %.2f%%, torch %.2f%%, top-1 agreement %.2f%%",
                target, runtime.name, onnx_accuracy, torch_accuracy, 100 * agreement)
    return ExportResult(path=target, finetuned=checkpoint is not None, onnx_accuracy=onnx_accuracy,
                        torch_accuracy=torch_accuracy, agreement=agreement, weight_bytes=weight_bytes,
                        layers=len(task.layer_names), runtime=runtime.name, kernels=kernels,
                        calibrated_outputs=form.calibrated_outputs, isa=isa if runtime.isa_bound else "",
                        isa_note=form.isa_note, unsigned_weights=form.unsigned_weights, float_layers=floats)


@dataclass(frozen=True)
class BuiltModel:
    """A policy's ONNX graph as the export writes it (checked, with its metadata), before the
    agreement check: what ``export_onnx`` verifies and writes, and what the end-to-end timing runs."""

    model: Any  # onnx.ModelProto
    reference: Any  # the fake-quantized PyTorch model the graph must agree with
    quantized: QuantPolicy  # the policy less its float layers
    floats: list[str]
    form: RuntimeForm


def build_model(onnx: Any, task: Task, policy: QuantPolicy, checkpoint: str | Path | None, runtime: Runtime,
                isa: str, opset: int, warn: bool = True) -> BuiltModel:
    """The ONNX graph of ``task``'s model at ``policy`` for ``runtime`` (float layers: w_bits 16/32),
    from the fine-tuned ``checkpoint`` or the post-training model (``warn``: say it is not fine-tuned)."""
    policy, floats = split_float_layers(policy, task)
    policy = policy.validate(task.layer_names, task.quant_config.min_bits, task.quant_config.max_bits)
    if task.spec.weight_method != "linear":
        raise ConfigError(f"weight_method {task.spec.weight_method!r} (k-means codebooks) has no QDQ form; "
                          "export needs linear weights")
    reference, plain, quant = exportable_model(task, policy, checkpoint, warn=warn)
    reference.eval()
    if floats:
        if checkpoint is not None:
            raise ConfigError(f"{checkpoint} has every layer quantized, but the policy keeps "
                              f"{', '.join(floats[:3])} float (w_bits 16/32): export its post-training model")
        reference, plain, quant = keep_float(task, plain, quant, floats)
    quantized = QuantPolicy({name: bits for name, bits in policy.items() if name not in floats}, policy.metadata)
    model = qdq_model(onnx, task, plain, quant, quantized, opset, int4=runtime.int4_weights)
    form = runtime.rewrite(model, quantized.layer_names, task, isa)
    for key, value in _metadata(task, policy, floats, checkpoint is not None, runtime, isa, opset, form).items():
        model.metadata_props.add(key=key, value=value)
    onnx.checker.check_model(model)
    return BuiltModel(model, reference, quantized, floats, form)


def _metadata(task: Task, policy: QuantPolicy, floats: list[str], finetuned: bool, runtime: Runtime, isa: str,
              opset: int, form: RuntimeForm) -> dict[str, str]:
    """The file's metadata_props: what was exported, for which runtime and CPUs, and how to feed it.

    ``policy`` holds the float layers at their stand-in bits: the metadata gives them as float
    (``w_bits`` 32), and a policy with float layers has no cost ratio (the cost table has no float form).
    """
    storage = {**_weight_storage(policy, runtime, opset), **float_storage(floats)}
    recorded = QuantPolicy({name: (entry["w_bits"], entry["a_bits"]) for name, entry in storage.items()},
                           policy.metadata).validate(policy.layer_names, 1, max(FLOAT_WIDTHS))
    ratio = "none: float layers" if floats else f"{policy_costs(task, policy)['cost_ratio']:.6f}"
    values = {"haq_rl_version": __version__, "policy": json.dumps(recorded.to_dict()),
              "profile": task.cost_table.profile_name, "profile_sha256": task.cost_table.profile_sha256,
              "objective": task.spec.objective, "cost_ratio": ratio,
              "env": task.spec.id, "finetuned": str(finetuned), "runtime": runtime.name,
              "weight_storage": json.dumps(storage),
              "calibrated_8bit_tensors": json.dumps(form.calibrated_outputs),
              "isa": isa if runtime.isa_bound else "any", "isa_note": form.isa_note or "float kernels",
              "unsigned_weight_layers": json.dumps(form.unsigned_weights),
              "verified_on": instruction_set(),
              # What a caller must do to pixels before this graph (docs/preprocessing.md).
              "preprocessing": json.dumps(task.preprocessing())}
    return {key: str(value) for key, value in values.items()}


def _weight_storage(policy: QuantPolicy, runtime: Runtime, opset: int) -> dict[str, dict[str, Any]]:
    """Per layer: the searched bits and the container they are stored in (the grid stays the searched one)."""
    int4 = runtime.int4_weights and opset >= 21
    return {name: {"w_bits": w_bits, "a_bits": a_bits,
                   "weight_container": "INT4" if int4 and w_bits <= 4 else "INT8",
                   "activation_container": "INT8"}
            for name, (w_bits, a_bits) in policy.items()}
