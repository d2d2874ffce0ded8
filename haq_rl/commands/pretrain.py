"""``haq-rl pretrain``: train a float model on a dataset and save its checkpoint."""

from __future__ import annotations

import argparse

from haq_rl.errors import DEVICE_CHOICES
from haq_rl.models import MODEL_NAMES


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register ``pretrain`` with the top-level parser."""
    from haq_rl.data import DATASET_NAMES

    parser = subparsers.add_parser(
        "pretrain",
        help="train a float model (zoo name or package.module:factory) and save a checkpoint",
        description="Train a float model on the search_train split, report its accuracy on "
                    "the reward and test splits, and save a checkpoint that `haq-rl search` "
                    "and get_pretrained() reuse.",
    )
    parser.add_argument("--model", default="mobilenetv2",
                        help=f"zoo model ({', '.join(MODEL_NAMES)}) or package.module:factory "
                             "(default: %(default)s)")
    parser.add_argument("--dataset", default="mnist5k",
                        help=f"one of {', '.join(DATASET_NAMES)} (default: %(default)s)")
    parser.add_argument("--data-root", default=None, help="folder of an on-disk dataset")
    parser.add_argument("--epochs", type=int, default=None,
                        help="training epochs (default: the model's recipe)")
    parser.add_argument("--lr", type=float, default=None,
                        help="peak SGD learning rate (default: the model's recipe)")
    parser.add_argument("--batch-size", type=int, default=64, help="default: %(default)s")
    parser.add_argument("--seed", type=int, default=0, help="training seed (default: %(default)s)")
    parser.add_argument("--split-seed", type=int, default=0,
                        help="seed of the search/reward/test split; use the search's "
                             "(default: %(default)s)")
    parser.add_argument("--width-mult", type=float, default=1.0,
                        help="MobileNet width multiplier (default: %(default)s)")
    parser.add_argument("--input-size", type=int, default=None,
                        help="resize images to this many pixels (default: dataset size)")
    parser.add_argument("--device", default="auto", help=DEVICE_CHOICES)
    parser.add_argument("--out", default=None,
                        help="checkpoint path (default: the pretrained cache, reused by search)")
    parser.add_argument("--force", action="store_true",
                        help="train even when haq-rl ships this model; the result is cached and "
                             "then used instead of the shipped one")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    parser.set_defaults(run=run)
    return parser


def run(args: argparse.Namespace) -> int:
    """Build the config from the flags, pretrain, print accuracies and the path."""
    from haq_rl.pretrain import (
        PretrainConfig,
        pretrain,
        read_checkpoint_meta,
        shipped_checkpoint_for,
    )

    config = PretrainConfig(
        model=args.model, dataset=args.dataset, epochs=args.epochs, lr=args.lr,
        batch_size=args.batch_size, seed=args.seed, split_seed=args.split_seed,
        data_root=args.data_root, width_mult=args.width_mult, input_size=args.input_size,
        device=args.device,
    )
    shipped = shipped_checkpoint_for(config)
    if shipped is not None and args.out is None and not args.force:
        meta = read_checkpoint_meta(shipped)
        print(f"{meta['model']} on {meta['dataset']} ships with haq-rl: test accuracy "
              f"{meta['test_accuracy']:.2f} %, reward accuracy {meta['reward_accuracy']:.2f} %; "
              "nothing to train (--force trains one here and uses it instead)")
        print(f"checkpoint: {shipped}")
        return 0
    path = pretrain(config, out=args.out, progress=not args.no_progress,
                    replaces_shipped=shipped is not None and args.out is None)
    meta = read_checkpoint_meta(path)
    print(f"{meta['model']} on {meta['dataset']}: test accuracy {meta['test_accuracy']:.2f} %, "
          f"reward accuracy {meta['reward_accuracy']:.2f} % "
          f"({meta['epochs']} epochs, {meta['wall_time_s']:.1f} s)")
    print(f"checkpoint: {path}")
    return 0
