"""``haq-rl finetune``: quantization-aware fine-tuning of a searched policy, plus baselines."""

from __future__ import annotations

import argparse
from typing import Any

from haq_rl.commands._common import (
    add_budget_argument,
    budget_source,
    name_given_model,
    weights_path,
)
from haq_rl.errors import DEVICE_CHOICES


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register ``finetune`` with the top-level parser."""
    from haq_rl.finetune import FinetuneConfig
    from haq_rl.finetune.config import OPTIMIZERS, QUANTIZERS, STARTS

    defaults = FinetuneConfig()
    parser = subparsers.add_parser(
        "finetune", help="fine-tune (QAT) a searched policy and compare it with uniform baselines",
        description="Quantization-aware fine-tuning of a run's best policy on the search_train "
                    "split, then evaluation on the test split. By default float, uniform 8/8, "
                    "uniform 4/4 and the largest uniform policy within the budget get the same "
                    "fine-tune budget. Writes finetuned.pt and metrics.json into the run "
                    "directory (or next to a bare policy JSON, or into --out).")
    parser.add_argument("source", metavar="RUN_DIR_OR_POLICY_JSON",
                        help="a search run directory or a policy JSON")
    parser.add_argument("--epochs", type=int, default=defaults.epochs,
                        help="fine-tune epochs over search_train; 0 measures the starting model as it is "
                             "(default %(default)s)")
    parser.add_argument("--epoch-images", type=int, default=None, metavar="N",
                        help="training images per epoch, drawn afresh each epoch (0: all of search_train; "
                             "default: the env's finetune_epoch_images)")
    parser.add_argument("--start", choices=STARTS, default=defaults.start,
                        help="the model to start from: float, supernet (its shared weights and the policy's "
                             "learned steps) or auto: supernet when the search's reward came from it "
                             "(default %(default)s)")
    parser.add_argument("--lr", type=float, default=defaults.lr,
                        help="peak learning rate of the weights, cosine schedule (default %(default)s)")
    parser.add_argument("--batch-size", type=int, default=defaults.batch_size,
                        help="default %(default)s")
    parser.add_argument("--seed", type=int, default=defaults.seed, help="default %(default)s")
    parser.add_argument("--device", default=defaults.device,
                        help=f"{DEVICE_CHOICES} (default %(default)s)")
    parser.add_argument("--env", default=None,
                        help="env id or YAML spec (default: the run's config.json or the policy's env_id)")
    parser.add_argument("--out", default=None, help="output folder (default: the run directory)")
    parser.add_argument("--model", default=None,
                        help="zoo name or package.module:factory (default: the run's; a policy JSON or a run "
                             "of your own model needs it, with --weights: haq-rl never imports an import path "
                             "read from a file)")
    parser.add_argument("--weights", type=weights_path, metavar="PATH",
                        help="trained weights of the model (default: the run's, else the pretrained cache)")
    parser.add_argument("--learnable-clip", action="store_true",
                        help="same as --quantizer pact (kept for old scripts)")
    parser.add_argument("--quantizer", choices=QUANTIZERS, default=defaults.quantizer,
                        help="lsq: learned step sizes (default); max_abs: max-abs weights and calibrated "
                             "clips; pact: max-abs weights and PACT clips")
    parser.add_argument("--no-zero-point", action="store_true",
                        help="no LSQ+ zero point on activations that can be negative")
    parser.add_argument("--optimizer", choices=OPTIMIZERS, default=defaults.optimizer, help="default %(default)s")
    parser.add_argument("--weight-decay", type=float, default=defaults.weight_decay, help="default %(default)s")
    parser.add_argument("--step-lr-scale", type=float, default=defaults.step_lr_scale,
                        help="learning rate of the step sizes as a multiple of --lr (default %(default)s)")
    parser.add_argument("--warmup", type=float, default=defaults.warmup,
                        help="fraction of the steps that warm up the step sizes before the weights "
                             "(default %(default)s)")
    parser.add_argument("--distill", type=float, default=defaults.distill,
                        help="weight of the distillation loss from the float model, 0 = labels only "
                             "(default %(default)s)")
    parser.add_argument("--temperature", type=float, default=defaults.temperature,
                        help="distillation temperature (default %(default)s)")
    parser.add_argument("--fold-bn", action="store_true",
                        help="fold BatchNorm into the conv weights before quantizing")
    parser.add_argument("--legacy-recipe", action="store_true",
                        help="the recipe before learned steps: max_abs, cross-entropy, SGD at lr 5e-3 "
                             "(other recipe flags are ignored)")
    add_budget_argument(parser)
    parser.add_argument("--no-compare", action="store_true",
                        help="fine-tune only the searched policy (no uniform baselines)")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bars")
    parser.add_argument("--no-measure", action="store_true",
                        help="on a measured target (ort-cpu), skip timing the exported models end to end "
                             "(every row's policy and the search's 5 best, beside the float model)")
    parser.set_defaults(run=run)
    return parser


def _fmt(value: Any, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def print_rows(rows: list[dict[str, Any]]) -> None:
    """The comparison table of metrics.json, aligned for a terminal."""
    width = max(len("policy"), *(len(row["name"]) for row in rows))
    print(f"{'policy':<{width}}  {'acc before':>10}  {'acc after':>9}  {'latency ms':>10}  "
          f"{'energy uJ':>10}  {'size KiB':>9}  {'cost ratio':>10}  budget")
    for row in rows:
        size = None if row["size_bytes"] is None else row["size_bytes"] / 1024
        within = {True: "yes", False: "no", None: "-"}[row["within_budget"]]
        print(f"{row['name']:<{width}}  {_fmt(row['accuracy_before'], '.2f'):>10}  "
              f"{_fmt(row['accuracy'], '.2f'):>9}  {_fmt(row['latency_ms'], '.4f'):>10}  "
              f"{_fmt(row['energy_uj'], '.2f'):>10}  {_fmt(size, '.1f'):>9}  "
              f"{_fmt(row['cost_ratio'], '.3f'):>10}  {within}")


def print_end_to_end(metrics: dict[str, Any]) -> None:
    """The rows and the search's best policies timed whole: predicted and measured latency
    ratio to 8/8, measured ms with the spread over rounds, and the budget flag."""
    entries = [*metrics["rows"], *metrics["end_to_end"]["top_policies"]]
    width = max(len(entry["name"]) for entry in entries)
    latency_budget = metrics["env"]["objective"] == "latency"
    print(f"measured end to end (onnxruntime, this CPU): ratios to uniform 8/8"
          f"{', budget ' + format(metrics['env']['budget'], 'g') if latency_budget else ''}")
    print(f"{'policy':<{width}}  {'predicted':>9}  {'measured':>8}  {'spread':>13}  {'ms':>7}  {'flag'}")
    for entry in entries:
        if "measured_latency_ratio" not in entry:
            continue
        low, high = entry["measured_latency_ratio_spread"]
        flag = {True: "within", False: "OVER BUDGET (measured)", None: ""}[entry["measured_within_budget"]]
        print(f"{entry['name']:<{width}}  {_fmt(entry.get('latency_ratio'), '.3f'):>9}  "
              f"{entry['measured_latency_ratio']:>8.3f}  {f'{low:.3f}-{high:.3f}':>13}  "
              f"{entry['measured_latency_ms']:>7.3f}  {flag}")


def config_from_args(args: argparse.Namespace) -> Any:
    """The FinetuneConfig the flags describe (one flag per field)."""
    from haq_rl.finetune import FinetuneConfig

    common = {"epochs": args.epochs, "batch_size": args.batch_size, "seed": args.seed, "device": args.device,
              "compare": not args.no_compare, "fold_bn": args.fold_bn, "start": args.start,
              "epoch_images": args.epoch_images}
    if args.legacy_recipe:
        lr_given = args.lr != FinetuneConfig().lr
        return FinetuneConfig.legacy(**common, **({"lr": args.lr} if lr_given else {}))
    return FinetuneConfig(**common, lr=args.lr, learnable_clip=args.learnable_clip, quantizer=args.quantizer,
                          zero_point=not args.no_zero_point, optimizer=args.optimizer,
                          weight_decay=args.weight_decay, step_lr_scale=args.step_lr_scale,
                          warmup=args.warmup, distill=args.distill, temperature=args.temperature)


def run(args: argparse.Namespace) -> int:
    """Fine-tune, print the comparison table and where the files went."""
    from pathlib import Path

    from haq_rl.finetune import finetune_run
    from haq_rl.run.layout import FINETUNED_FILE, METRICS_FILE
    from haq_rl.run.resolve import policy_source

    name_given_model(args.model)
    if args.budget is not None:
        args.source = str(budget_source(args.source, args.budget))
    config = config_from_args(args)
    from haq_rl.export.end_to_end import end_to_end_fields

    metrics = finetune_run(args.source, config, env=args.env, out=args.out, weights=args.weights,
                           model=args.model, progress=not args.no_progress,
                           end_to_end=None if args.no_measure else end_to_end_fields)
    _, out_dir, _ = policy_source(args.source, args.out)
    env = metrics["env"]
    print(f"{metrics['label']}: {env['objective']} budget {env['budget']:g} of 8/8 on {env['hardware']}; "
          f"{config.epochs} epoch(s) of {metrics['finetune']['epoch_images']} images, "
          f"{config.effective_quantizer}, {config.optimizer} lr {config.lr:g}, "
          f"distill {config.distill:g}, from the {metrics['start']} model; accuracy on the test split "
          f"(float row: pretrained, not fine-tuned)")
    print_rows(metrics["rows"])
    if metrics.get("end_to_end"):
        print_end_to_end(metrics)
    margin = metrics.get("searched_vs_uniform4")
    if margin:
        print(f"searched vs uniform 4/4: accuracy {margin['accuracy_margin']:+.2f} points, "
              f"cost ratio x{_fmt(margin['cost_ratio'], '.3f')}")
    from haq_rl.report.conclusions import finetune_conclusions

    for sentence in finetune_conclusions(metrics):  # what the table means, as report.md says it
        print(sentence.replace("**", ""))
    print(f"wrote {Path(out_dir) / FINETUNED_FILE} and {Path(out_dir) / METRICS_FILE} "
          f"({metrics['wall_time_s']:.1f} s)")
    return 0
