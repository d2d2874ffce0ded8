"""``haq-rl profile``: what each layer of a model costs on a hardware profile.

    haq-rl profile --model mobilenetv2 --input-size 224 --batch 16 --hw bismo-cloud \\
        --compare-table ../shared/reference/haq_mobilenetv2_cloud_latency_table.npy
    haq-rl profile --model mobilenetv2 --input-size 28 --measure ort-cpu   # time this CPU (cached)
"""

from __future__ import annotations

import argparse
import csv
import io
import logging
import math
from pathlib import Path

import numpy as np

from haq_rl.commands._common import weights_path
from haq_rl.errors import ConfigError, MissingPathError
from haq_rl.fileio import check_writable_folder, write_text_atomic
from haq_rl.hardware.cost_index import cost_at

logger = logging.getLogger(__name__)

CSV_COLUMNS = ("layer", "kind", "in_channels", "out_channels", "kernel", "stride", "groups",
               "in_h", "out_h", "batch", "w_bits", "a_bits", "cycles", "latency_ms", "energy_uj",
               "bound")


def parse_bits(text: str, flag: str, lo: int = 1, hi: int = 8) -> list[int]:
    """'2,4,8' or '2-8' (or a mix) -> sorted unique ints in lo..hi, else ConfigError."""
    values: set[int] = set()
    try:
        for part in text.split(","):
            part = part.strip()
            if "-" in part[1:]:
                start, end = part.split("-", 1)
                values.update(range(int(start), int(end) + 1))
            else:
                values.add(int(part))
    except ValueError:
        raise ConfigError(f"{flag} {text!r}: expected a comma list of integers like 2,4,8 or a range 2-8") from None
    bad = sorted(v for v in values if not lo <= v <= hi)
    if bad or not values:
        raise ConfigError(f"{flag} {text!r}: bits must be in {lo}..{hi} (got {bad or 'nothing'})")
    return sorted(values)


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    from haq_rl.hardware.targets import TARGET_TABLE

    parser = subparsers.add_parser("profile", help="per-layer cost of a model on a hardware profile",
                                   description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="zoo name or package.module:factory")
    parser.add_argument("--input-size", type=int, required=True, help="input height = width (pixels)")
    parser.add_argument("--batch", type=int, default=None, help="images per batch (default: the profile's)")
    parser.add_argument("--hw", default=None, help="hardware profile name or path to a YAML")
    parser.add_argument("--measure", default=None, metavar="ort-cpu",
                        help="measure a lookup profile on this machine instead of --hw: each layer alone, float "
                             "and fused INT8, in onnxruntime (1 thread); cached per machine and version")
    parser.add_argument("--repeats", type=int, default=TARGET_TABLE["measured"].repeats, help="--measure: runs per median (default %(default)s)")
    parser.add_argument("--out", type=Path, default=None,
                        help="--measure: folder for profile.yaml + table.csv (default: the haq-rl cache)")
    parser.add_argument("--no-progress", action="store_true", help="--measure: no progress bar")
    parser.add_argument("--in-channels", type=int, default=None,
                        help="input channels (default 3 for input size >= 64, else 1)")
    parser.add_argument("--num-classes", type=int, default=None,
                        help="classes (default 1000 for input size >= 64, else 10)")
    parser.add_argument("--w-bits", default=None, help="weight bits, e.g. 4 or 2,4,8 or 2-8 (default: the profile's range)")
    parser.add_argument("--a-bits", default=None, help="activation bits (default: the profile's range)")
    parser.add_argument("--csv", type=Path, default=None, help="write one row per (layer, w_bits, a_bits)")
    parser.add_argument("--compare-table", type=Path, default=None,
                        help="a published [layer, w-1, a-1] .npy table to validate the model against")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random policies for --compare-table")
    parser.add_argument("--weights", type=weights_path, metavar="PATH",
                        help="trained weights to check against the model (costs depend on shapes only)")
    parser.set_defaults(run=run)
    return parser


def _fmt(value: float, digits: int = 3) -> str:
    return "-" if not math.isfinite(value) else f"{value:,.{digits}f}"


def _write_csv(path: Path, table, w_list: list[int], a_list: list[int]) -> None:
    stream = io.StringIO()
    writer = csv.writer(stream)
    writer.writerow(CSV_COLUMNS)
    for i, spec in enumerate(table.specs):
        for w in w_list:
            for a in a_list:
                cycles = cost_at(table.cycles, i, w, a)
                energy = cost_at(table.energy_uj, i, w, a)
                writer.writerow([
                    spec.name, spec.kind, spec.in_channels, spec.out_channels, spec.kernel,
                    spec.stride, spec.groups, spec.in_h, spec.out_h, spec.batch, w, a,
                    "" if not math.isfinite(cycles) else f"{cycles:.6g}",
                    "" if not math.isfinite(cost_at(table.latency_ms, i, w, a))
                    else f"{cost_at(table.latency_ms, i, w, a):.6g}",
                    "" if not math.isfinite(energy) else f"{energy:.6g}",
                    cost_at(table.bound, i, w, a),
                ])
    write_text_atomic(path, stream.getvalue())  # never a half-written CSV


def _measured_profile(args: argparse.Namespace) -> Path:
    """``--measure``: the cached measured profile of this model, machine and onnxruntime, or a new one."""
    from haq_rl.hardware.measured_cache import cached_measured_profile
    from haq_rl.hardware.targets import MEASURED_TARGETS

    if args.measure not in MEASURED_TARGETS:
        raise ConfigError(f"--measure {args.measure!r}: the measurable targets are {', '.join(MEASURED_TARGETS)}")
    if args.hw is not None:
        raise ConfigError("--measure and --hw exclude each other: --measure writes the profile --hw would name")
    if args.repeats < 1:
        raise ConfigError(f"--repeats {args.repeats} must be positive")
    batch = 1 if args.batch is None else args.batch
    if args.input_size < 1 or batch < 1:
        raise ConfigError(f"--input-size {args.input_size} and --batch {batch} must be positive")
    specs, in_channels = _model_specs(args, batch)
    label = f"{args.model.replace(':', '_').replace('/', '_')}-{args.input_size}px"
    profile, measured_now = cached_measured_profile(args.measure, specs, label, repeats=args.repeats,
                                                    folder=args.out, progress=not args.no_progress)
    if measured_now:
        print(f"wrote the measured profile {profile} ({args.model} {in_channels}x{args.input_size}px, batch {batch})")
    else:
        print(f"reusing the measured profile {profile} (same model, batch, machine and onnxruntime)")
    return profile


def _model_specs(args: argparse.Namespace, batch: int) -> tuple[list, int]:
    big = args.input_size >= 64
    in_channels = args.in_channels or (3 if big else 1)
    num_classes = args.num_classes or (1000 if big else 10)
    from haq_rl.models import (  # torch: imported only here
        build_model,
        extract_layer_specs,
        load_weights,
    )

    model = build_model(args.model, num_classes=num_classes, in_channels=in_channels, input_size=args.input_size)
    if args.weights is not None:  # fail on weights of another architecture before costing
        load_weights(model, args.weights, model_name=f"model {args.model!r}")
    return extract_layer_specs(model, (in_channels, args.input_size, args.input_size), batch=batch), in_channels


def run(args: argparse.Namespace) -> int:
    from haq_rl.hardware import CostTable, compare_tables, describe, load_profile

    if args.out is not None:  # where the results go can take them: checked before any work
        check_writable_folder(args.out, "--out folder")
    if args.csv is not None:
        check_writable_folder(args.csv.expanduser().parent, "--csv folder")
    if args.measure is not None:
        args.hw = str(_measured_profile(args))
        if args.batch is None:
            args.batch = 1
    elif args.hw is None:
        raise ConfigError("give --hw PROFILE (a name or a YAML) or --measure ort-cpu")
    profile = load_profile(args.hw)
    if args.input_size < 1:
        raise ConfigError(f"--input-size {args.input_size} must be positive")
    batch = profile.batch if args.batch is None else args.batch
    if batch < 1:
        raise ConfigError(f"--batch {batch} must be positive")
    w_list = parse_bits(args.w_bits, "--w-bits", profile.min_bits, profile.max_bits) if args.w_bits \
        else list(range(profile.min_bits, profile.max_bits + 1))
    a_list = parse_bits(args.a_bits, "--a-bits", profile.min_bits, profile.max_bits) if args.a_bits \
        else list(range(profile.min_bits, profile.max_bits + 1))
    if args.compare_table is not None and not args.compare_table.is_file():
        raise MissingPathError(f"--compare-table: file not found: {args.compare_table}")

    specs, in_channels = _model_specs(args, batch)
    table = CostTable.build(specs, profile, max_bits=max(8, profile.max_bits))

    print(f"{args.model} at {in_channels}x{args.input_size}x{args.input_size}, batch {batch}: {describe(specs, batch)}")
    print(f"hardware: {profile.name} ({profile.cost_model}) - {profile.description}")
    w_show, a_show = max(w_list), max(a_list)
    w_low, a_low = min(w_list), min(a_list)
    has_latency = table.has("latency")
    metric = table.latency_ms if has_latency else table.bops
    label = "ms" if has_latency else "BOPs"
    header = (f"{'layer':28s} {'kind':9s} {'MACs':>14s} {label + ' 8/8':>14s} "
              f"{f'{label} {w_low}/{a_low}':>14s} {'bound 8/8':>16s} {f'bound {w_low}/{a_low}':>16s}")
    print(header)
    print("-" * len(header))
    for i, spec in enumerate(specs):
        print(f"{spec.name[:28]:28s} {spec.kind:9s} {spec.macs:>14,d} {_fmt(cost_at(metric, i, 8, 8)):>14s} "
              f"{_fmt(cost_at(metric, i, w_low, a_low)):>14s} {cost_at(table.bound, i, 8, 8):>16s} "
              f"{cost_at(table.bound, i, w_low, a_low):>16s}")
    print("-" * len(header))
    print(f"{'total':28s} {'':9s} {sum(s.macs for s in specs):>14,d} {_fmt(cost_at(metric, slice(None), 8, 8).sum()):>14s} "
          f"{_fmt(cost_at(metric, slice(None), w_low, a_low).sum()):>14s}")
    if w_show != 8 or a_show != 8:
        print(f"total at {w_show}/{a_show}: {_fmt(cost_at(metric, slice(None), w_show, a_show).sum())} {label}")
    if table.has("energy"):
        print(f"energy total: 8/8 {_fmt(cost_at(table.energy_uj, slice(None), 8, 8).sum())} uJ, "
              f"{w_low}/{a_low} {_fmt(cost_at(table.energy_uj, slice(None), w_low, a_low).sum())} uJ")
    print(f"weights: 8 bit {cost_at(table.size_bytes, slice(None), 8, 8).sum() / 2**20:.3f} MiB, "
          f"{w_low} bit {cost_at(table.size_bytes, slice(None), w_low, 1).sum() / 2**20:.3f} MiB")

    if args.csv is not None:
        _write_csv(args.csv, table, w_list, a_list)
        print(f"wrote {len(specs) * len(w_list) * len(a_list)} rows to {args.csv}")

    if args.compare_table is not None:
        from haq_rl.hardware import read_table

        reference, _ = read_table(args.compare_table)
        if reference.shape[0] != len(specs):
            raise ConfigError(f"--compare-table has {reference.shape[0]} layers; the model has {len(specs)}")
        ours = table.cycles if np.isfinite(table.cycles).any() else table.objective("bops")
        comparison = compare_tables(ours, reference, policies=1000, seed=args.seed,
                                    min_bits=profile.min_bits)
        print(f"compared with {args.compare_table} ({reference.shape[0]} layers, "
              f"{reference.shape[1]}x{reference.shape[2]} bits; ours in cycles):")
        for line in comparison.lines():
            print(f"  {line}")
    return 0
