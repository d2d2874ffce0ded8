"""Every dotted ``haq_rl.`` name the docs and README mention in backticks exists."""

from __future__ import annotations

import importlib
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
NAME = re.compile(r"`(haq_rl(?:\.[A-Za-z_][A-Za-z0-9_]*)+)")


def _names() -> list[tuple[str, str]]:
    found = []
    for page in PAGES:
        for name in sorted(set(NAME.findall(page.read_text()))):
            found.append((page.name, name))
    return found


def _resolve(dotted: str) -> object:
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            target: object = importlib.import_module(".".join(parts[:cut]))
        except ModuleNotFoundError:
            continue
        for attribute in parts[cut:]:
            target = getattr(target, attribute)
        return target
    raise ModuleNotFoundError(dotted)


@pytest.mark.parametrize("page, name", _names(), ids=lambda value: str(value))
def test_documented_name_exists(page: str, name: str):
    try:
        _resolve(name)
    except (AttributeError, ModuleNotFoundError) as error:
        raise AssertionError(f"{page} documents {name}, which does not exist ({error})") from None
