"""``haq-rl envs``: list the registered environments and their settings."""

from __future__ import annotations

import argparse
import json

COLUMNS = ("id", "model", "dataset", "input_size", "hardware", "objective", "budget",
           "min_bits", "max_bits", "step_mode", "weight_method", "reward_metric")


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "envs", help="list registered environments",
        description="List the registered haq_rl/... Gymnasium ids and their settings.")
    parser.add_argument("env_id", nargs="?", help="show every setting of one env (id or YAML path)")
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from haq_rl.task.spec import resolve_spec, shipped_specs

    if args.env_id:
        spec = resolve_spec(args.env_id)
        data = spec.to_dict()
        if args.json:
            print(json.dumps(data, indent=2))
        else:
            width = max(len(key) for key in data)
            for key, value in data.items():
                print(f"{key:<{width}}  {value}")
        return 0
    specs = list(shipped_specs().values())
    rows = [{column: getattr(spec, column) for column in COLUMNS} for spec in specs]
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    widths = {c: max(len(c), *(len(str(r[c])) for r in rows)) for c in COLUMNS}
    print("  ".join(c.ljust(widths[c]) for c in COLUMNS))
    for row in rows:
        print("  ".join(str(row[c]).ljust(widths[c]) for c in COLUMNS))
    return 0
