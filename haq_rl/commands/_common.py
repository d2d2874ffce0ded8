"""Small helpers shared by the CLI commands."""

from __future__ import annotations

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
