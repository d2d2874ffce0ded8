"""Small helpers shared by the CLI commands."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import yaml

from haq_rl.errors import ConfigError


def parse_key_values(items: list[str], flag: str) -> dict[str, Any]:
    """``["budget=0.3", "pin_first_last=false"]`` -> {"budget": 0.3, "pin_first_last": False}."""
    parsed: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"{flag} {item!r} must look like KEY=VALUE")
        parsed[key.strip()] = yaml.safe_load(value)  # YAML scalars: numbers, booleans, null, strings
    return parsed


def name_given_model(model: str | None) -> None:
    """Vouch for the import path the user gave with ``--model`` (models.user.name_user_model)."""
    if model is not None:
        from haq_rl.models.user import name_user_model

        name_user_model(model)


#: Where :func:`record_given_flags` keeps the flags a command line gave.
GIVEN_FLAGS = "given_flags"


def record_given_flags(parser: argparse.ArgumentParser) -> None:
    """Make every option of ``parser`` note its dest in ``args.given_flags`` when given on the
    command line (argparse alone cannot tell a flag set to its default from one left out)."""
    for action in parser._actions:  # argparse has no public hook for this
        if not action.option_strings or isinstance(action, argparse._HelpAction):
            continue
        base = type(action)

        def call(self: Any, parser: Any, namespace: Any, values: Any, option_string: Any = None,
                 _base: Any = base) -> None:
            _base.__call__(self, parser, namespace, values, option_string)
            setattr(namespace, GIVEN_FLAGS, getattr(namespace, GIVEN_FLAGS, frozenset()) | {self.dest})

        action.__class__ = type(f"Given{base.__name__}", (base,), {"__call__": call})


def print_policy_table(policy_path: Path) -> None:
    """Print layer, w_bits, a_bits of a policy JSON as an aligned table."""
    from haq_rl.quant import QuantPolicy

    policy = QuantPolicy.from_json(policy_path)
    names = policy.layer_names
    width = max(len("layer"), *(len(n) for n in names))
    print(f"{'layer':<{width}}  w_bits  a_bits")
    for name, w, a in zip(names, policy.w_bits, policy.a_bits, strict=True):
        print(f"{name:<{width}}  {int(w):>6}  {int(a):>6}")


def weights_path(text: str) -> str:
    """``--weights PATH`` made absolute, so that a run directory's config.json still finds
    it from another working directory (a missing file is the library's one-line error)."""
    return str(Path(text).expanduser().resolve())


def parse_ratios(text: str, flag: str) -> list[float]:
    """``"0.4,0.5"`` -> [0.4, 0.5]; a one-line error names an entry that is not a number
    (ranges and order are the library's checks)."""
    values = []
    for entry in text.split(","):
        try:
            values.append(float(entry))
        except ValueError:
            raise ConfigError(f"{flag} entry {entry.strip()!r} is not a number (give ratios such as 0.5)") from None
    return values


def budget_arguments(budget: str | None, objective: str | None, budgets: str | None) -> dict[str, Any]:
    """SearchConfig's ``budget``, ``objective``, ``extra_budgets`` and ``budgets`` from the flags.

    ``--objective latency,energy --budget 0.5,0.6`` constrains both (one budget per
    objective, the first is the main one); ``--budgets 0.3,0.5`` is a conditioned search.
    """
    objectives = [name.strip() for name in objective.split(",")] if objective else []
    ratios = parse_ratios(budget, "--budget") if budget is not None else []
    if len(objectives) > 1 and len(ratios) != len(objectives):
        raise ConfigError(f"--objective lists {len(objectives)} objectives ({objective}); give one --budget "
                          f"ratio for each, e.g. --budget {','.join(['0.5'] * len(objectives))}")
    if len(objectives) <= 1 and len(ratios) > 1:
        raise ConfigError(f"--budget {budget} lists {len(ratios)} ratios for one objective; for several "
                          "budgets of one objective use --budgets (a budget-conditioned search)")
    arguments: dict[str, Any] = {
        "objective": objectives[0] if objectives else None,
        "budget": ratios[0] if ratios else None,
        "budgets": tuple(parse_ratios(budgets, "--budgets")) if budgets is not None else None,
    }
    if len(objectives) > 1:
        arguments["extra_budgets"] = dict(zip(objectives[1:], ratios[1:], strict=True))
    return arguments


def add_budget_argument(parser: Any) -> None:
    """``--budget B``: pick one budget's policy of a budget-conditioned run."""
    parser.add_argument("--budget", type=float, default=None, metavar="B",
                        help="a budget of a conditioned run (--budgets); one it did not search "
                             "is served by its agent's actor, rolled out once at B")


def budget_source(run_dir: str, budget: float) -> Path:
    """The policy JSON of ``budget`` in a conditioned run (rolled out by the actor if unsearched)."""
    from haq_rl.search.budget_policy import budget_policy

    return budget_policy(run_dir, budget)
