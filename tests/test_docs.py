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


# ------------------------------------------------ documented defaults = the code's (issue 35, item 7)
def _occurrences(pattern: str) -> list[tuple[str, str]]:
    """(page, captured value) of every match of ``pattern`` in README.md and docs/."""
    return [(page.name, match) for page in PAGES for match in re.findall(pattern, page.read_text())]


def test_documented_default_episodes_are_the_codes():
    from haq_rl.search import SearchConfig

    found = _occurrences(r"(\d+) episodes by default") + _occurrences(r"--episodes` \(default (\d+)")
    assert found, "no page states the default episodes any more: update this test"
    wrong = [(page, value) for page, value in found if int(value) != SearchConfig().episodes]
    assert not wrong, f"pages give other default episodes than SearchConfig ({SearchConfig().episodes}): {wrong}"


_NUMBER_WORDS = {"one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8}


def test_user_guide_lists_every_notebook():
    notebooks = sorted(path.name for path in (ROOT / "notebooks").glob("*.ipynb"))
    text = (ROOT / "docs" / "user_guide.md").read_text()
    (word,) = re.findall(r"(\w+) Jupyter notebooks in `notebooks/`", text)
    assert _NUMBER_WORDS.get(word.lower()) == len(notebooks), f"user_guide.md says {word}, there are {notebooks}"
    listed = sorted(set(re.findall(r"^\| `(\d\d_\w+\.ipynb)`", text, flags=re.MULTILINE)))
    assert listed == notebooks


def _finetune_default_windows() -> list[tuple[str, str]]:
    """(page, text) after each mention of the default recipe, ``FinetuneConfig()`` or
    ``FinetuneConfig(compare=False)``, to the end of its paragraph (300 characters at most)."""
    windows = []
    for page in PAGES:
        text = page.read_text()
        for match in re.finditer(r"FinetuneConfig\((?:compare=False)?\)", text):
            windows.append((page.name, text[match.end():match.end() + 300].split("\n\n")[0]))
    return windows


def test_documented_finetune_defaults_are_the_codes():
    from haq_rl.finetune import FinetuneConfig

    defaults = FinetuneConfig()
    windows = _finetune_default_windows()
    lrs = [(page, lr) for page, text in windows for lr in re.findall(r"Adam,? (?:at )?lr (\d[\d.e-]*\d)", text)]
    lrs += _occurrences(r"the default \(lr (\d[\d.e-]*\d)")
    assert lrs, "no page quotes the default fine-tune lr any more: update this test"
    assert [(page, lr) for page, lr in lrs if float(lr) != defaults.lr] == []
    epochs = [(page, n) for page, text in windows for n in re.findall(r"(\d+) epochs?\b", text)]
    assert epochs, "no page quotes the default fine-tune epochs any more: update this test"
    assert [(page, n) for page, n in epochs if int(n) != defaults.epochs] == []


def test_python_api_documents_every_export_onnx_keyword():
    import inspect

    from haq_rl.export import export_onnx

    text = (ROOT / "docs" / "python_api.md").read_text()
    (documented,) = re.findall(r"`haq_rl\.export\.export_onnx\(([^`]*)\)`", text)
    names = {part.split("=")[0].strip() for part in documented.split(",")}
    missing = [name for name in inspect.signature(export_onnx).parameters if name not in names]
    assert not missing, f"docs/python_api.md's export_onnx lacks {missing}"
    defaults = {name: param.default for name, param in inspect.signature(export_onnx).parameters.items()}
    for part in documented.split(","):
        if "=" in part:
            name, value = (piece.strip() for piece in part.split("=", 1))
            assert repr(defaults[name]) == value or str(defaults[name]) == value.strip("'\""), (name, value)


def test_notebooks_do_not_hard_code_an_old_default_env():
    """The builder names the default env through haq_rl.env.DEFAULT_ENV_ID (it changes)."""
    from haq_rl.env import DEFAULT_ENV_ID

    source = (ROOT / "notebooks" / "_build_notebooks.py").read_text()
    stale = [line.strip() for line in source.splitlines()
             if re.search(r"default (env|task)", line) and "DEFAULT_ENV_ID" not in line
             and re.search(r"haq_rl/\w+-v\d", line)]
    assert not stale, f"notebooks name a fixed env as the default (it is {DEFAULT_ENV_ID}): {stale}"
