"""``haq-rl supernet``: train a task's bit-width supernet once (cached), or show the cached one.

    haq-rl supernet haq_rl/MobileNetV2Edge-v2
    haq-rl supernet haq_rl/ResNet8Edge-v0 --epochs 5 --force
"""

from __future__ import annotations

import argparse

from haq_rl.commands._common import parse_key_values, weights_path
from haq_rl.task.spec import DEFAULT_ENV_ID


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "supernet", help="train a task's bit-width supernet (once; searches with reward_source "
                         "supernet or predictor reuse it)",
        description="Train the bit-width supernet of a task: one model whose layers hold every bit width "
                    "(shared weights, a learned step per width), trained with the sandwich rule and "
                    "distillation from the float model. The result is cached in $HAQ_RL_CACHE/supernet; "
                    "a killed training resumes. Prints the supernet's reward accuracy at uniform widths.")
    parser.add_argument("env", nargs="?", default=DEFAULT_ENV_ID,
                        help=f"registered env id or YAML spec (default {DEFAULT_ENV_ID})")
    parser.add_argument("--epochs", type=int, default=None,
                        help="passes over search_train (default: the env's reward_options epochs, else 3)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override an env spec setting, e.g. --set min_bits=3")
    parser.add_argument("--model", default=None,
                        help="zoo name or package.module:factory (default: the env's); as given to search")
    parser.add_argument("--weights", type=weights_path, metavar="PATH",
                        help="trained weights of the model (a state_dict file); as given to search")
    parser.add_argument("--device", default=None, help="cpu, cuda or auto (default: the env's)")
    parser.add_argument("--force", action="store_true", help="train again even when the cache holds it")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    parser.set_defaults(run=run)
    return parser


def run(args: argparse.Namespace) -> int:
    from haq_rl.supernet import train_supernet
    from haq_rl.supernet.reward import supernet_config, supernet_evaluator
    from haq_rl.task import load_task
    from haq_rl.task.budget import pinned_layers, uniform_bits
    from haq_rl.task.label import model_label

    overrides = parse_key_values(args.set, "--set")
    if args.device is not None:
        overrides["device"] = args.device
    for field in ("model", "weights"):  # the same spec fields search --model/--weights set
        if getattr(args, field) is not None:
            overrides[field] = getattr(args, field)
    task = load_task(args.env, **overrides)
    config = supernet_config(task)
    if args.epochs is not None:
        config = config.replace(epochs=args.epochs)
    trained = train_supernet(task, config, progress=not args.no_progress, force=args.force)
    history = trained.history
    how = "trained" if trained.trained_now else "from the cache"
    print(f"supernet of {model_label(task.spec)} ({len(task.layers)} layers, {task.spec.min_bits}-{task.spec.max_bits} "
          f"bits) {how}: {history.get('steps', '?')} steps in {history.get('seconds', float('nan')):.0f} s")
    print(f"file: {trained.path}")
    evaluator = supernet_evaluator(task, trained)
    print(f"reward split accuracy (float {evaluator.float_accuracy:.2f} %), BatchNorm re-estimated per policy:")
    pinned = pinned_layers(len(task.layers), task.spec.pin_first_last)
    for bits in range(task.spec.max_bits, task.spec.min_bits - 1, -1):
        scores = evaluator.scores(*uniform_bits(pinned, task.spec.weight_only, bits))
        print(f"  uniform {bits}/{bits if not task.spec.weight_only else 8}: {scores.accuracy:6.2f} %  "
              f"KL {scores.kl:.4f}")
    return 0
