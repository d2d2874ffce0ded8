"""``haq-rl export``: the searched policy as an ONNX model in QDQ form, verified in onnxruntime.

    haq-rl export runs/default                       # uses runs/default/finetuned.pt
    haq-rl export runs/x/best_policy.json --out x.onnx --opset 21
    haq-rl export runs/default --runtime ort --out int8.onnx   # integer kernels in onnxruntime
"""

from __future__ import annotations

import argparse

from haq_rl.commands._common import (
    add_budget_argument,
    budget_source,
    name_given_model,
    weights_path,
)


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    from haq_rl.export.integer_form import ISAS
    from haq_rl.export.onnx_qdq import DEFAULT_OPSET
    from haq_rl.export.runtimes import RUNTIME_TABLE

    parser = subparsers.add_parser(
        "export", help="ONNX (QDQ) model with the searched bits, checked in onnxruntime",
        description="Write the searched policy's model as ONNX: integer weights at the searched "
                    "bits (INT4 at <= 4 bits from opset 21, else INT8) with per-channel "
                    "DequantizeLinear, and Clip/QuantizeLinear/DequantizeLinear on every "
                    "quantized layer's input (--runtime reference, the exact simulation); or, with "
                    "--runtime ort, BatchNorm folded and Q/DQ on outputs too, which onnxruntime runs as "
                    "integer kernels (QLinearConv, QGemm). Prints onnxruntime's test accuracy beside PyTorch's.")
    parser.add_argument("source", metavar="RUN_DIR_OR_POLICY_JSON")
    parser.add_argument("--checkpoint", default=None, metavar="FINETUNED_PT",
                        help="fine-tuned checkpoint (default: the run's finetuned.pt, else post-training)")
    parser.add_argument("--out", default=None, help="output file (default: model.onnx next to the policy)")
    parser.add_argument("--opset", type=int, default=DEFAULT_OPSET, help="ONNX opset (default %(default)s)")
    parser.add_argument("--runtime", default="reference", metavar="|".join(RUNTIME_TABLE),
                        help="; ".join(f"{row.name}: {row.summary}" for row in RUNTIME_TABLE.values())
                        + " (default %(default)s)")
    parser.add_argument("--isa", default="portable", choices=ISAS,
                        help="with --runtime ort, the CPUs the integer model must be exact on: portable (every x86 "
                             "CPU; 8-bit weights run as U8U8 kernels) or vnni (VNNI CPUs only; every weight INT8, "
                             "U8S8 kernels, which saturate without VNNI) (default %(default)s)")
    parser.add_argument("--allow-mismatch", action="store_true",
                        help="write the model even when onnxruntime disagrees with PyTorch beyond the tolerance")
    parser.add_argument("--force", action="store_true", help="replace an existing --out")
    parser.add_argument("--model", default=None,
                        help="zoo name or package.module:factory (default: the run's; a policy JSON or a run "
                             "of your own model needs it: haq-rl never imports an import path read from a file)")
    parser.add_argument("--weights", type=weights_path, metavar="PATH",
                        help="trained weights of the model (default: the run's, else the pretrained cache)")
    add_budget_argument(parser)
    parser.set_defaults(run=run)
    return parser


def run(args: argparse.Namespace) -> int:
    from haq_rl.export import export_onnx
    from haq_rl.export.runtimes import runtime_named

    name_given_model(args.model)
    if args.budget is not None:
        args.source = str(budget_source(args.source, args.budget))
    result = export_onnx(args.source, checkpoint=args.checkpoint, out=args.out, opset=args.opset, force=args.force,
                         runtime=args.runtime, isa=args.isa, allow_mismatch=args.allow_mismatch,
                         model=args.model, weights=args.weights)
    kind = "fine-tuned" if result.finetuned else "post-training quantized (not fine-tuned)"
    print(f"wrote {result.path} ({kind}, {result.runtime} runtime, {result.layers} quantized layers, "
          f"{result.weight_bytes / 1024:.1f} KiB of integer weights)")
    if result.float_layers:
        print(f"{len(result.float_layers)} layers kept float (w_bits 16/32): {', '.join(result.float_layers)}")
    if runtime_named(result.runtime).fuses:
        quantized = result.layers - len(result.float_layers)
        print(f"onnxruntime runs {result.integer_kernels} of {quantized} quantized layers as integer kernels "
              f"({', '.join(f'{op} {n}' for op, n in sorted(result.kernels.items()) if op.startswith(('QLinear', 'QGemm', 'MatMul')))}); "
              f"{len(result.calibrated_outputs)} tensors on a calibrated 8-bit grid")
        print(f"instruction set: {result.isa}: {result.isa_note}")
    print(f"test accuracy: onnxruntime {result.onnx_accuracy:.2f}%, PyTorch fake quant {result.torch_accuracy:.2f}%; "
          f"same top-1 on {100 * result.agreement:.2f}% of images")
    return 0
