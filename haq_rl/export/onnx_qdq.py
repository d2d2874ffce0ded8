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
"""

from __future__ import annotations

import io
import json
import logging
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from haq_rl import __version__
from haq_rl.errors import ConfigError, ExportMismatchError, MissingDependencyError
from haq_rl.export.integer_form import ISAS
from haq_rl.fileio import atomic_write, remove_stale_temps
from haq_rl.finetune import policy_costs
from haq_rl.finetune.policy_model import exportable_model
from haq_rl.hardware.cpu import has_vnni, instruction_set
from haq_rl.quant import QuantPolicy
from haq_rl.run.layout import FINETUNED_FILE
from haq_rl.run.lock import run_lock
from haq_rl.run.resolve import policy_source, policy_spec, task_for
from haq_rl.task.task import Task

logger = logging.getLogger(__name__)

#: The opset written by default: INT4/UINT4 in QuantizeLinear/DequantizeLinear need 21.
DEFAULT_OPSET = 21
#: ``reference``: the exact simulation of the searched bits (Q/DQ on inputs, INT4 weights);
#: ``ort``: the pattern onnxruntime fuses into integer kernels (see integer_form).
RUNTIMES = ("reference", "ort")
#: The least share of test images on which the exported model must pick PyTorch's class, and the
#: largest accuracy gap in points: beyond either, the file is not written (``allow_mismatch``
#: overrides). At few bits the integer form's requantization may round a handful of outputs the
#: other way; a systematic error (a saturating kernel) moves thousands.
MIN_AGREEMENT = 0.99
MAX_ACCURACY_GAP = 0.5
#: What torch's TorchScript exporter writes; the graph is then raised to ``opset``.
_TORCH_OPSET = 20


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
    #: ops of onnxruntime's optimized graph (``ort`` runtime only): QLinearConv, QGemm, ...
    kernels: dict[str, int] = field(default_factory=dict)
    #: tensors the ``ort`` form quantizes at a calibrated 8-bit grid where PyTorch does not
    calibrated_outputs: list[str] = field(default_factory=list)
    #: the instruction set the ``ort`` form was written for (``integer_form.ISAS``), and why
    isa: str = ""
    isa_note: str = ""
    #: layers whose 8-bit weights the ``portable`` form stores as UINT8 (U8U8 kernels)
    unsigned_weights: list[str] = field(default_factory=list)

    @property
    def integer_kernels(self) -> int:
        """How many fused integer Conv/Gemm/MatMul kernels onnxruntime runs."""
        from haq_rl.export.integer_form import INTEGER_KERNELS

        return sum(count for op, count in self.kernels.items() if op in INTEGER_KERNELS and op != "QLinearAdd")


def _onnx() -> tuple[Any, Any]:
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
    onnx, onnxruntime = _onnx()
    if not 13 <= opset <= 23:
        raise ConfigError(f"opset={opset} must be between 13 and 23")
    if runtime not in RUNTIMES:
        raise ConfigError(f"runtime {runtime!r} must be one of {', '.join(RUNTIMES)}")
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
                              runtime, isa, allow_mismatch, model, weights)


def _export_locked(onnx: Any, onnxruntime: Any, policy_path: Path, out_dir: Path, run_config: Path | None,
                   target: Path, checkpoint: str | Path | None, opset: int, task: Task | None,
                   runtime: str, isa: str, allow_mismatch: bool, model_name: str | None,
                   weights: str | None) -> ExportResult:
    policy = QuantPolicy.from_json(policy_path)
    spec = policy_spec(policy, None, run_config, model=model_name, weights=weights)
    task = task_for(spec, task, budget=spec.budget)
    policy = policy.validate(task.layer_names, task.quant_config.min_bits, task.quant_config.max_bits)
    if checkpoint is None and (policy_path.parent / FINETUNED_FILE).is_file():
        checkpoint = policy_path.parent / FINETUNED_FILE
    if task.spec.weight_method != "linear":
        raise ConfigError(f"weight_method {task.spec.weight_method!r} (k-means codebooks) has no QDQ form; "
                          "export needs linear weights")
    reference, plain, quant = exportable_model(task, policy, checkpoint)
    reference.eval()
    # The integer form keeps every weight in an INT8 container: no onnxruntime kernel reads INT4 here.
    model = _qdq_model(onnx, task, plain, quant, policy, opset, int4=runtime == "reference")
    if runtime == "reference":
        _biases_as_add(model.graph, policy.layer_names)
    calibrated: list[str] = []
    unsigned: list[str] = []
    isa_note = ""
    if runtime == "ort":
        from haq_rl.export.integer_form import to_integer_form

        report = to_integer_form(model, policy.layer_names, [batch.cpu().numpy() for batch in task.calibration_inputs()],
                                 isa=isa)
        calibrated, unsigned = report.calibrated_outputs, report.unsigned_weights
        isa_note = isa_explanation(isa, len(unsigned))
    costs = policy_costs(task, policy)
    for key, value in {"haq_rl_version": __version__, "policy": json.dumps(policy.to_dict()),
                       "profile": task.cost_table.profile_name, "profile_sha256": task.cost_table.profile_sha256,
                       "objective": task.spec.objective, "cost_ratio": f"{costs['cost_ratio']:.6f}",
                       "env": task.spec.id, "finetuned": str(checkpoint is not None), "runtime": runtime,
                       "weight_storage": json.dumps(_weight_storage(policy, runtime, opset)),
                       "calibrated_8bit_tensors": json.dumps(calibrated),
                       "isa": isa if runtime == "ort" else "any", "isa_note": isa_note or "float kernels",
                       "unsigned_weight_layers": json.dumps(unsigned),
                       "verified_on": instruction_set(),
                       # What a caller must do to pixels before this graph (docs/preprocessing.md).
                       "preprocessing": json.dumps(task.preprocessing())}.items():
        model.metadata_props.add(key=key, value=str(value))
    onnx.checker.check_model(model)
    data = model.SerializeToString()
    kernels: dict[str, int] = {}
    if runtime == "ort":
        kernels = _check_fused(data, target, len(policy.layer_names))
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
    atomic_write(target, lambda stream: stream.write(data))
    weight_bytes = sum(_initializer_bytes(onnx, init) for init in model.graph.initializer
                       if init.name.endswith(".weight_q"))
    logger.info("wrote %s (%s runtime): onnxruntime %.2f%%, torch %.2f%%, top-1 agreement %.2f%%",
                target, runtime, onnx_accuracy, torch_accuracy, 100 * agreement)
    return ExportResult(path=target, finetuned=checkpoint is not None, onnx_accuracy=onnx_accuracy,
                        torch_accuracy=torch_accuracy, agreement=agreement, weight_bytes=weight_bytes,
                        layers=len(task.layer_names), runtime=runtime, kernels=kernels,
                        calibrated_outputs=calibrated, isa=isa if runtime == "ort" else "", isa_note=isa_note,
                        unsigned_weights=unsigned)


def isa_explanation(isa: str, unsigned_layers: int) -> str:
    """One sentence: which CPUs the integer form is exact on, and why (for metadata and the CLI)."""
    here = instruction_set()
    if isa == "vnni":
        warning = "" if has_vnni() else " (this CPU has no VNNI: its U8S8 kernels saturate on 8-bit weights)"
        return (f"every weight INT8 (U8S8 kernels): exact on x86 CPUs with AVX512-VNNI or AVX-VNNI only{warning}; "
                f"verified on {here}")
    return (f"exact on every x86 CPU: {unsigned_layers} layers with 8-bit weights stored as UINT8 (U8U8 kernels, no "
            f"16-bit saturation without VNNI), narrower weights as INT8 within +-63; verified on {here}")


def _weight_storage(policy: QuantPolicy, runtime: str, opset: int) -> dict[str, dict[str, Any]]:
    """Per layer: the searched bits and the container they are stored in (the grid stays the searched one)."""
    int4 = runtime == "reference" and opset >= 21
    return {name: {"w_bits": w_bits, "a_bits": a_bits,
                   "weight_container": "INT4" if int4 and w_bits <= 4 else "INT8",
                   "activation_container": "INT8"}
            for name, (w_bits, a_bits) in policy.items()}


def _check_fused(data: bytes, target: Path, layers: int) -> dict[str, int]:
    """onnxruntime's optimized graph (``optimized_model_filepath``): which integer kernels it runs."""
    import tempfile

    from haq_rl.export.integer_form import INTEGER_KERNELS, fused_kernels

    with tempfile.TemporaryDirectory(prefix=".haq-optimized-", dir=target.parent) as folder:
        kernels = fused_kernels(data, str(Path(folder) / "optimized.onnx"))
    fused = sum(count for op, count in kernels.items() if op in INTEGER_KERNELS and op != "QLinearAdd")
    if fused < layers:
        logger.warning("onnxruntime fused %d of %d quantized layers into integer kernels (%s)", fused, layers,
                       ", ".join(f"{op} {count}" for op, count in sorted(kernels.items())))
    return kernels


def _qdq_model(onnx: Any, task: Task, plain: torch.nn.Module, quant: dict[str, Any],
               policy: QuantPolicy, opset: int, int4: bool = True) -> Any:
    """The float graph of ``plain`` (holding the quantized weights), with QDQ around every quantized layer."""

    plain = plain.cpu().eval()
    state = plain.state_dict()
    example = task.splits.test.tensors[0][:1]
    buffer = io.BytesIO()
    with warnings.catch_warnings():  # torch's TorchScript exporter is deprecated, still complete
        warnings.simplefilter("ignore", DeprecationWarning)
        _torch_export(plain, example, buffer, opset)
    model = onnx.load_from_string(buffer.getvalue())
    graph = model.graph
    alias = {node.output[0]: node.input[0] for node in graph.node if node.op_type == "Identity"}
    _token_linears_as_gemm(graph, alias)
    use_int4 = int4 and opset >= 21
    weight_users, compute_nodes = _layer_nodes(graph, alias, quant)
    new_nodes = []
    done = set()
    for index, node in enumerate(list(graph.node)):
        layer = weight_users.get(index)
        if layer is not None:  # the node that reads the float weight: read its dequantized integers
            new_nodes.append(_dequantized_weight(graph, node, layer, state, quant[layer], use_int4))
            done.add(layer)
        layer = compute_nodes.get(index)
        if layer is not None:  # the Conv / Gemm / MatMul: quantize its input activation first
            new_nodes += _quantized_input(graph, node, layer, quant[layer])
        new_nodes.append(node)
    missing = [name for name in policy.layer_names if name not in done]
    if missing:
        raise ConfigError(f"these layers did not export as Conv, Gemm or Transpose+MatMul with their weight: "
                          f"{', '.join(missing[:3])}")
    # The float copies of the quantized weights, and the Identity nodes that passed them
    # on, are no longer used: drop dead nodes (outputs nobody reads), then unused initializers.
    from haq_rl.export.integer_form import live_nodes

    _replace_nodes(graph, live_nodes(new_nodes, (output.name for output in graph.output)))
    for entry in model.opset_import:
        if entry.domain in ("", "ai.onnx"):
            entry.version = opset
    return model


def _biases_as_add(graph: Any, layers: list[str]) -> None:
    """Move the float bias of each quantized layer's Conv/Gemm into an ``Add`` right after it.

    From ``ORT_ENABLE_BASIC`` on, onnxruntime quantizes the constant bias of a Conv/Gemm whose
    input and weight come from DequantizeLinear to INT32 at the step ``a_scale * w_scale``.
    At 2-4 bits that step is coarse: on a LeNet-5 layer with 2-bit weights and activations
    the bias moved by up to 0.06, and 0.6 % of the test images changed class. A separate
    ``Add`` keeps the bias float, so onnxruntime computes what PyTorch does.
    """
    from onnx import helper, numpy_helper

    initializers = {init.name: init for init in graph.initializer}
    weights = {f"{layer}.weight_dq": layer for layer in layers}
    nodes = []
    for node in graph.node:
        nodes.append(node)
        layer = weights.get(node.input[1]) if node.op_type in ("Conv", "Gemm") and len(node.input) > 2 else None
        if layer is None or node.input[2] not in initializers:
            continue
        bias = numpy_helper.to_array(initializers[node.input[2]]).astype(np.float32)
        if node.op_type == "Gemm":
            bias = bias * next((a.f for a in node.attribute if a.name == "beta"), 1.0)
        else:  # (C,) -> (C, 1, ..., 1): one value per output channel of an NC... output
            rank = len(initializers[f"{layer}.weight_q"].dims)
            bias = bias.reshape(-1, *([1] * (rank - 2)))
        name, output = f"{layer}.bias_add", node.output[0]
        graph.initializer.append(numpy_helper.from_array(bias.astype(np.float32), name))
        del node.input[2]
        node.output[0] = f"{output}_without_bias"
        nodes.append(helper.make_node("Add", [node.output[0], name], [output], name=f"{layer}/bias_add"))
    _replace_nodes(graph, nodes)


def _replace_nodes(graph: Any, nodes: list[Any]) -> None:
    """Make ``nodes`` the graph's nodes and drop the initializers no node reads any more."""
    del graph.node[:]
    graph.node.extend(nodes)
    used = {name for node in graph.node for name in node.input}
    kept = [init for init in graph.initializer if init.name in used]
    del graph.initializer[:]
    graph.initializer.extend(kept)


def _token_linears_as_gemm(graph: Any, alias: dict[str, str]) -> None:
    """Rewrite ``MatMul(x, Transpose(W))`` (a Linear on token inputs: attention projections,
    transformer MLPs) as ``Reshape(Gemm(Reshape(x, [-1, in]), W, transB=1), shape(x)[:-1] + [out])``.

    The same function, in the 2-D Gemm form that onnxruntime runs in QDQ; its own fusion
    of QDQ MatMul + Add into Gemm fails to load (mismatched zero-point types, 1.31).
    """
    from onnx import helper, numpy_helper

    initializers = {init.name: init for init in graph.initializer}
    producers = {output: node for node in graph.node for output in node.output}
    rewritten = []
    for node in list(graph.node):
        transpose = producers.get(node.input[1]) if node.op_type == "MatMul" and len(node.input) == 2 else None
        if transpose is None or transpose.op_type != "Transpose":
            rewritten.append(node)
            continue
        weight = alias.get(transpose.input[0], transpose.input[0])
        if weight not in initializers or len(initializers[weight].dims) != 2:
            rewritten.append(node)
            continue
        out_features, in_features = (int(d) for d in initializers[weight].dims)
        base = node.output[0]
        names = {key: f"{base}/token_{key}" for key in ("flat_shape", "flat", "gemm", "shape", "lead", "tail",
                                                       "starts", "ends", "out_shape")}
        graph.initializer.extend([
            numpy_helper.from_array(np.array([-1, in_features], np.int64), names["flat_shape"]),
            numpy_helper.from_array(np.array([out_features], np.int64), names["tail"]),
            numpy_helper.from_array(np.array([0], np.int64), names["starts"]),
            numpy_helper.from_array(np.array([-1], np.int64), names["ends"]),
        ])
        rewritten += [
            helper.make_node("Reshape", [node.input[0], names["flat_shape"]], [names["flat"]]),
            helper.make_node("Gemm", [names["flat"], transpose.input[0]], [names["gemm"]], transB=1),
            helper.make_node("Shape", [node.input[0]], [names["shape"]]),
            helper.make_node("Slice", [names["shape"], names["starts"], names["ends"]], [names["lead"]]),
            helper.make_node("Concat", [names["lead"], names["tail"]], [names["out_shape"]], axis=0),
            helper.make_node("Reshape", [names["gemm"], names["out_shape"]], [node.output[0]]),
        ]
    del graph.node[:]
    graph.node.extend(rewritten)


def _layer_nodes(graph: Any, alias: dict[str, str], quant: dict[str, Any]) -> tuple[dict[int, str], dict[int, str]]:
    """For each quantized layer (by node index): the node that reads its weight initializer and the node that
    computes with it. A Conv or Gemm is both; a Linear on token inputs exports as
    Transpose(weight) -> MatMul, the Transpose reading and the MatMul computing."""
    def layer_of(name: str) -> str | None:
        for candidate in (name, alias.get(name, name)):  # dedup may alias equal weights
            layer = candidate.removesuffix(".weight") if candidate.endswith(".weight") else None
            if layer in quant:
                return layer
        return None

    nodes = list(graph.node)
    producers = {output: index for index, node in enumerate(nodes) for output in node.output}
    weight_users: dict[int, str] = {}
    compute: dict[int, str] = {}
    for index, node in enumerate(nodes):
        if node.op_type in ("Conv", "Gemm") and len(node.input) > 1 and (layer := layer_of(node.input[1])):
            if node.op_type == "Gemm" and not any(a.name == "transB" and a.i == 1 for a in node.attribute):
                raise ConfigError(f"layer {layer!r} exports as a Gemm without transB; not supported")
            weight_users[index] = compute[index] = layer
        elif node.op_type == "MatMul" and node.input[1] in producers:
            transpose = producers[node.input[1]]
            if nodes[transpose].op_type == "Transpose" and (layer := layer_of(nodes[transpose].input[0])):
                raise ConfigError(f"layer {layer!r} exports as Transpose + MatMul, which has no QDQ form here")
    return weight_users, compute


def _dequantized_weight(graph: Any, reader: Any, layer: str, state: dict[str, torch.Tensor],
                        params: dict[str, Any], use_int4: bool) -> Any:
    """Integer weight + per-channel scale initializers and the DequantizeLinear that ``reader`` now reads."""
    from onnx import TensorProto, helper, numpy_helper

    w_bits = int(params["w_bits"])
    if params["w_scale"] is None:
        raise ConfigError(f"layer {layer!r} has {w_bits}-bit weights without a linear scale; not exportable")
    weight = state[f"{layer}.weight"].detach().float().cpu()
    scale = torch.tensor(params["w_scale"], dtype=torch.float32)
    levels = torch.round(weight / scale.reshape(-1, *([1] * (weight.dim() - 1))))
    narrow = use_int4 and w_bits <= 4
    dtype = TensorProto.INT4 if narrow else TensorProto.INT8
    q_name, s_name, z_name = f"{layer}.weight_q", f"{layer}.weight_scale", f"{layer}.weight_zero"
    graph.initializer.append(_integer_tensor(q_name, levels.to(torch.int8).numpy(), narrow))
    graph.initializer.append(numpy_helper.from_array(scale.numpy(), s_name))
    graph.initializer.append(helper.make_tensor(z_name, dtype, [len(scale)], [0] * len(scale)))
    dq_weight = f"{layer}.weight_dq"
    position = 1 if reader.op_type in ("Conv", "Gemm") else 0
    reader.input[position] = dq_weight
    return helper.make_node("DequantizeLinear", [q_name, s_name, z_name], [dq_weight], axis=0,
                            name=f"{layer}/weight_dequantize")


def _quantized_input(graph: Any, node: Any, layer: str, params: dict[str, Any]) -> list[Any]:
    """Clip -> QuantizeLinear -> DequantizeLinear on ``node``'s input, which then reads the result."""
    from onnx import TensorProto, helper, numpy_helper

    a_bits, signed, a_scale = int(params["a_bits"]), bool(params["a_signed"]), float(params["a_scale"])
    # An LSQ+ zero point z (signed inputs; 0 in older checkpoints) shifts the grid:
    # values (q - z) * scale for q in the signed range, i.e. QuantizeLinear's zero point z.
    zero = int(params.get("a_zero_point", 0))
    low, high = (-(2 ** (a_bits - 1)) - zero, 2 ** (a_bits - 1) - 1 - zero) if signed else (0, 2 ** a_bits - 1)
    names = {key: f"{layer}.input_{key}" for key in ("low", "high", "scale", "zero", "clipped", "q", "dq")}
    graph.initializer.extend([
        numpy_helper.from_array(np.array(low * a_scale, np.float32), names["low"]),
        numpy_helper.from_array(np.array(high * a_scale, np.float32), names["high"]),
        numpy_helper.from_array(np.array(a_scale, np.float32), names["scale"]),
        # INT8 for every activation (unsigned ones as zero point -128): onnxruntime's MatMul
        # fusions mishandle a UINT8 zero point next to INT8 weights.
        helper.make_tensor(names["zero"], TensorProto.INT8, [], [zero if signed else -128]),
    ])
    nodes = [
        helper.make_node("Clip", [node.input[0], names["low"], names["high"]], [names["clipped"]],
                         name=f"{layer}/input_clip"),
        helper.make_node("QuantizeLinear", [names["clipped"], names["scale"], names["zero"]], [names["q"]],
                         name=f"{layer}/input_quantize"),
        helper.make_node("DequantizeLinear", [names["q"], names["scale"], names["zero"]], [names["dq"]],
                         name=f"{layer}/input_dequantize"),
    ]
    node.input[0] = names["dq"]
    return nodes


def _integer_tensor(name: str, values: np.ndarray, int4: bool) -> Any:
    """An INT8 initializer, or an INT4 one packed two values per byte (first in the low nibble)."""
    from onnx import TensorProto, helper, numpy_helper

    if not int4:
        return numpy_helper.from_array(values.astype(np.int8), name)
    flat = values.astype(np.int8).reshape(-1)
    nibbles = (flat & 0x0F).astype(np.uint8)
    if len(nibbles) % 2:
        nibbles = np.append(nibbles, np.uint8(0))
    packed = nibbles[0::2] | (nibbles[1::2] << 4)
    return helper.make_tensor(name, TensorProto.INT4, list(values.shape), packed.tobytes(), raw=True)


def _torch_export(model: torch.nn.Module, example: torch.Tensor, buffer: io.BytesIO, opset: int) -> None:
    torch.onnx.export(model, (example,), buffer,  # type: ignore[arg-type]
                      dynamo=False, opset_version=min(opset, _TORCH_OPSET),
                      do_constant_folding=False, training=torch.onnx.TrainingMode.PRESERVE,
                      input_names=["input"], output_names=["scores"],
                      dynamic_axes={"input": {0: "batch"}, "scores": {0: "batch"}})


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


def _initializer_bytes(onnx: Any, init: Any) -> int:
    """Stored bytes of an initializer (INT4 packs two values per byte)."""
    count = int(np.prod(init.dims)) if init.dims else 1
    if init.data_type in (onnx.TensorProto.INT4, onnx.TensorProto.UINT4):
        return (count + 1) // 2
    return count * np.dtype(onnx.helper.tensor_dtype_to_np_dtype(init.data_type)).itemsize
