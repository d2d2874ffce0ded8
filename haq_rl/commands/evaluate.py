"""``haq-rl evaluate``: test accuracy and hardware cost of any policy (optionally fine-tuned)."""

from __future__ import annotations

import argparse
import json

from haq_rl.commands._common import (
    add_budget_argument,
    budget_source,
    name_given_model,
    weights_path,
)
from haq_rl.errors import DEVICE_CHOICES


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register ``evaluate`` with the top-level parser."""
    parser = subparsers.add_parser(
        "evaluate", help="accuracy, latency, energy and size of a policy",
        description="Evaluate a policy JSON (or a uniform policy) on an env's test split: "
                    "accuracy of the quantized model (post-training, or a fine-tuned "
                    "--checkpoint), latency, energy, size and the cost ratio to 8/8.")
    parser.add_argument("policy", nargs="?", metavar="POLICY_JSON",
                        help="policy JSON (optional with --uniform or --checkpoint), or a run "
                             "directory with --budget")
    parser.add_argument("--uniform", type=int, metavar="B",
                        help="evaluate uniform B/B (first/last layers at 8 bits when the env pins them)")
    parser.add_argument("--env", default=None,
                        help="env id or YAML spec (default: from the checkpoint or policy, else the default env)")
    parser.add_argument("--checkpoint", default=None, metavar="FINETUNED_PT",
                        help="a finetuned.pt written by `haq-rl finetune`")
    parser.add_argument("--model", default=None,
                        help="zoo name or package.module:factory (default: the checkpoint's, run's or env's; "
                             "a policy JSON of your own model needs it, with --weights)")
    parser.add_argument("--weights", type=weights_path, metavar="PATH",
                        help="trained weights of the model (default: the run's, else the pretrained cache)")
    add_budget_argument(parser)
    parser.add_argument("--device", default="cpu", help=DEVICE_CHOICES)
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    parser.add_argument("--no-measure", action="store_true",
                        help="on a measured target (ort-cpu), skip timing the exported model end to end "
                             "beside the float model and uniform 8/8")
    parser.set_defaults(run=run)
    return parser


def run(args: argparse.Namespace) -> int:
    """Resolve policy and env, evaluate, print a table or JSON."""
    from pathlib import Path

    from haq_rl.errors import CheckpointError, ConfigError, HaqError
    from haq_rl.finetune import evaluate_policy, load_finetuned, uniform_policy
    from haq_rl.models.user import model_from_file
    from haq_rl.quant import QuantPolicy
    from haq_rl.run.resolve import policy_spec, run_config_for
    from haq_rl.task.spec import DEFAULT_ENV_ID, TaskSpec, resolve_spec
    from haq_rl.task.task import load_task

    name_given_model(args.model)
    if args.policy is not None and args.uniform is not None:
        raise ConfigError("give either POLICY_JSON or --uniform B, not both")
    if args.policy is None and args.uniform is None and args.checkpoint is None:
        raise ConfigError("give a POLICY_JSON, --uniform B or --checkpoint FINETUNED_PT")
    if args.budget is not None:
        if args.policy is None:
            raise ConfigError("--budget B needs the RUN_DIR of a budget-conditioned search")
        args.policy = str(budget_source(args.policy, args.budget))
    policy = QuantPolicy.from_json(args.policy) if args.policy is not None else None
    # Read the checkpoint first: a broken file should fail before the model is loaded.
    payload = load_finetuned(args.checkpoint) if args.checkpoint is not None else None
    if args.env is not None:
        spec = resolve_spec(args.env)
    elif payload is not None and isinstance(payload["meta"], dict) and isinstance(payload["meta"].get("env"), dict):
        try:  # the env it was fine-tuned on
            spec = TaskSpec.from_dict(payload["meta"]["env"], source=f"{args.checkpoint} meta")
        except HaqError as error:
            raise CheckpointError(f"{args.checkpoint} meta: {error}") from None
        model_from_file(spec.model, f"{args.checkpoint} meta")
    elif policy is not None:
        spec = policy_spec(policy, None, run_config_for(Path(args.policy)), model=args.model, weights=args.weights)
    else:
        spec = resolve_spec(DEFAULT_ENV_ID)
    spec = spec.replace(device=args.device)
    if args.model is not None:
        spec = spec.replace(model=args.model)
    if args.weights is not None:
        spec = spec.replace(weights=args.weights)
    task = load_task(spec)
    if args.uniform is not None:
        if not spec.min_bits <= args.uniform <= spec.max_bits:
            raise ConfigError(f"--uniform {args.uniform} outside the env's bit range "
                              f"[{spec.min_bits}, {spec.max_bits}]")
        policy = uniform_policy(task, args.uniform)
    result = evaluate_policy(task, policy, args.checkpoint)
    if not args.no_measure:
        from haq_rl.export.end_to_end import end_to_end_fields

        measured = end_to_end_fields(task, {"policy": policy})
        if measured:
            result["end_to_end"] = {"policy": measured["policy"], "float": measured["float"],
                                    "predicted_latency_ratio": result["latency_ratio"]}
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    kind = "fine-tuned checkpoint" if result["finetuned"] else "post-training quantization"
    # The label is the env id, or the user's own model (then the env id would name another model).
    model = "" if result["label"] != result["env"] else f"{result['model']} "
    print(f"{result['label']} ({model}on {result['dataset']}, {result['hardware']}, {kind})")
    rows = [
        ("accuracy (test) %", f"{result['accuracy']:.2f}"),
        ("latency ms", _fmt(result["latency_ms"], ".4f")),
        ("energy uJ", _fmt(result["energy_uj"], ".3f")),
        ("size KiB", _fmt(None if result["size_bytes"] is None else result["size_bytes"] / 1024, ".2f")),
        ("BOPs", _fmt(result["bops"], ".4g")),
        (f"{result['objective']} ratio to 8/8", f"{result['cost_ratio']:.4f}"),
        (f"within budget {result['budget']:g}", "yes" if result["within_budget"] else "no"),
        ("mean w/a bits", f"{result['mean_w_bits']:.2f} / {result['mean_a_bits']:.2f}"),
    ]
    measured = result.get("end_to_end")
    if measured:
        mine, floats = measured["policy"], measured["float"]
        low, high = mine["measured_latency_ratio_spread"]
        flag = {True: "", False: " OVER BUDGET (measured)", None: ""}[mine["measured_within_budget"]]
        rows += [
            ("measured latency ms", f"{mine['measured_latency_ms']:.4f} (float model "
                                    f"{floats['measured_latency_ms']:.4f}; onnxruntime, this CPU)"),
            ("latency ratio to 8/8", f"predicted {_fmt(measured['predicted_latency_ratio'], '.3f')}, measured "
                                     f"{mine['measured_latency_ratio']:.3f} ({low:.3f}-{high:.3f}){flag}"),
        ]
    width = max(len(name) for name, _ in rows)
    for name, value in rows:
        print(f"{name:<{width}}  {value}")
    return 0


def _fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)
