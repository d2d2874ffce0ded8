"""The layers of haq_rl: what each package may import, checked on the source and in a fresh interpreter.

hardware <- quant <- models/data/training <- task (and supernet on it) <- env <- agent <- search <- cli, with
run, finetune and report on task. No import runs back up.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "haq_rl"

#: Layer of each top-level module or package of haq_rl (base utilities are 0).
LAYERS = {
    "errors": 0, "fileio": 0, "cache": 0, "resources": 0, "seeding": 0, "progress": 0, "checkpoint_io": 0,
    "hardware": 1,
    "quant": 2,
    "models": 3, "data": 3, "training": 3, "pretrain": 3, "shipped_models": 3,
    "task": 4, "supernet": 4,
    "run": 5, "parallel": 5, "finetune": 6, "report": 6, "export": 7,
    "env": 5,
    "agent": 6,
    "search": 7,
    "cli": 8, "commands": 8, "__main__": 8,
}
#: Imports between packages of the same or a lower layer that are still not allowed: the
#: task layer and everything on it stays gymnasium- and SB3-free, and the agent drives any env.
FORBIDDEN = {
    # The supernet builds on the task layer (its rules, evaluator and scorer); the task
    # layer takes a supernet evaluator as an argument and never imports it back.
    "task": {"supernet"},
    "supernet": {"run", "parallel", "env"},
    "env": {"run", "finetune", "report"},
    "run": {"env"},
    "parallel": {"env", "agent", "run"},
    "agent": {"env", "run", "finetune", "report"},
    "finetune": {"env", "agent", "report"},
    "report": {"env", "agent"},
    "export": {"env", "agent", "search"},
}


def _top(module: str) -> str:
    return module.split(".")[1] if module.count(".") >= 1 else ""


def _imports(path: Path) -> set[str]:
    """Every haq_rl.X named by an import in ``path``, lazy (inside functions) ones included."""
    tree = ast.parse(path.read_text())
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("haq_rl"):
            if node.module == "haq_rl":
                found.update(f"haq_rl.{alias.name}" for alias in node.names)
            else:
                found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name.startswith("haq_rl."))
    return found


def _own_top(path: Path) -> str:
    relative = path.relative_to(PACKAGE)
    return relative.parts[0].removesuffix(".py")


SOURCES = sorted(path for path in PACKAGE.rglob("*.py") if path.name != "__init__.py" or path.parent != PACKAGE)


def test_every_module_has_a_layer():
    assert {_own_top(path) for path in SOURCES} <= set(LAYERS)


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_no_import_runs_back_up(path: Path):
    own = _own_top(path)
    for module in _imports(path):
        target = _top(module)
        if target in ("", "__version__", own):
            continue
        assert target in LAYERS, f"{path}: imports unknown {module}"
        assert target not in FORBIDDEN.get(own, set()), f"{path} ({own}) must not import {module}"
        assert LAYERS[target] <= LAYERS[own], (
            f"{path} ({own}, layer {LAYERS[own]}) imports {module} (layer {LAYERS[target]})")


def test_lower_layers_load_neither_gymnasium_nor_sb3():
    code = ("import sys\n"
            "import haq_rl.hardware, haq_rl.quant, haq_rl.task, haq_rl.task.task, haq_rl.task.scoring\n"
            "import haq_rl.task.conditioned, haq_rl.task.steps\n"
            "import haq_rl.finetune, haq_rl.report, haq_rl.run.load, haq_rl.run.lock, haq_rl.parallel\n"
            "print(sorted(m for m in ('gymnasium', 'stable_baselines3') if m in sys.modules))\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]", result.stdout + result.stderr


def test_env_loads_gymnasium_but_not_sb3():
    code = ("import sys\nimport haq_rl.env\nfrom haq_rl.env.factory import make_env\n"
            "print('gymnasium' in sys.modules, 'stable_baselines3' in sys.modules)\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.split() == ["True", "False"], result.stdout + result.stderr


def _cycle(package: str) -> list[str] | None:
    """An import circle between the modules of ``package`` (its __init__ aside: it only
    re-exports), counting every import, lazy and TYPE_CHECKING ones included; None if none."""
    folder = PACKAGE / package
    names = {path.stem for path in folder.glob("*.py") if path.name != "__init__.py"}
    prefix = f"haq_rl.{package}."
    edges = {name: sorted(m.removeprefix(prefix).split(".")[0] for m in _imports(folder / f"{name}.py")
                          if m.startswith(prefix) and m.removeprefix(prefix).split(".")[0] in names - {name})
             for name in names}
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(name: str, path: list[str]) -> list[str] | None:
        state[name] = 1
        for other in edges[name]:
            if state.get(other) == 1:
                return [*path[path.index(other):], other] if other in path else [*path, other]
            if other not in state:
                found = visit(other, [*path, other])
                if found:
                    return found
        state[name] = 2
        return None

    for name in sorted(names):
        if name not in state:
            found = visit(name, [name])
            if found:
                return found
    return None


@pytest.mark.parametrize("package", ["search", "parallel"])
def test_no_import_circle_inside_search_or_parallel(package):
    assert _cycle(package) is None, f"import circle in haq_rl/{package}: {' -> '.join(_cycle(package) or [])}"
