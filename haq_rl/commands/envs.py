"""``haq-rl envs``: list the registered environments and their settings."""

from __future__ import annotations

import argparse
import dataclasses
import json
from typing import Any

#: Shown for every id, whether or not the shipped ids differ in them.
BASE_COLUMNS = ("model", "dataset", "hardware", "objective", "budget", "reward_metric", "reward_source")
#: Never columns: the id is the first column, the rest is prose or where the spec was read.
_NOT_COLUMNS = ("id", "description", "source")


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "envs", help="list registered environments",
        description="List the registered haq_rl/... Gymnasium ids: one row per id with every setting that "
                    "tells two ids apart, and which ids are deprecated. With an id: its documentation "
                    "(Action Space, Observation Space, Rewards, Episode End, Arguments, Version History).")
    parser.add_argument("env_id", nargs="?", help="show the documentation and every setting of one env (id or YAML path)")
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    parser.set_defaults(run=run)


def columns_for(specs: list[Any]) -> list[str]:
    """The base columns plus every spec field whose value differs between two of ``specs``,
    in the spec's field order (so no two distinct ids print identical rows)."""
    from haq_rl.task.spec import TaskSpec

    names = [f.name for f in dataclasses.fields(TaskSpec) if f.name not in _NOT_COLUMNS]
    return [name for name in names
            if name in BASE_COLUMNS or len({repr(getattr(spec, name)) for spec in specs}) > 1]


def run(args: argparse.Namespace) -> int:
    from haq_rl.env.card import env_card
    from haq_rl.env.registration import DEPRECATED
    from haq_rl.task.spec import resolve_spec, shipped_specs

    if args.env_id:
        spec = resolve_spec(args.env_id)
        if args.json:
            print(json.dumps({**spec.to_dict(), "replaced_by": _replaced_by(spec.id, DEPRECATED)}, indent=2))
        else:
            print(env_card(spec), end="")
        return 0
    specs = list(shipped_specs().values())
    columns = ["id", *columns_for(specs), "replaced_by"]
    rows = [{"id": spec.id, **{c: getattr(spec, c) for c in columns[1:-1]},
             "replaced_by": _replaced_by(spec.id, DEPRECATED)} for spec in specs]
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    text = [{c: "" if row[c] is None else str(row[c]) for c in columns} for row in rows]
    widths = {c: max(len(c), *(len(row[c]) for row in text)) for c in columns}
    print("  ".join(c.ljust(widths[c]) for c in columns).rstrip())
    for row in text:
        print("  ".join(row[c].ljust(widths[c]) for c in columns).rstrip())
    return 0


def _replaced_by(env_id: str, deprecated: dict[str, Any]) -> str | None:
    """The id that replaces a deprecated one (None for a current id)."""
    entry = deprecated.get(env_id)
    return entry.replaced_by if entry else None
