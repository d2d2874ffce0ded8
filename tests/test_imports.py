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
    "errors": 0, "interrupts": 0, "fileio": 0, "cache": 0, "resources": 0, "seeding": 0, "progress": 0, "checkpoint_io": 0,
    "hardware": 1,
    "quant": 2,
    "models": 3, "data": 3, "training": 3, "pretrain": 3, "shipped_models": 3, "maintain": 3,
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


def _module_name(path: Path) -> str:
    relative = path.relative_to(PACKAGE.parent).with_suffix("")
    return ".".join(relative.parts[:-1] if relative.name == "__init__" else relative.parts)


#: Every module of haq_rl but the packages' __init__ (they only re-export), by dotted name.
MODULES = {_module_name(path): path for path in SOURCES if path.name != "__init__.py"}


def _import_graph(modules: dict[str, Path]) -> dict[str, list[str]]:
    """Module -> the modules of haq_rl it imports, lazy and TYPE_CHECKING imports included
    (``from haq_rl.pkg import mod`` counts as an import of ``haq_rl.pkg.mod``)."""
    edges: dict[str, list[str]] = {}
    for name, path in modules.items():
        targets = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("haq_rl"):
                targets.add(node.module)
                targets.update(f"{node.module}.{alias.name}" for alias in node.names)
            elif isinstance(node, ast.Import):
                targets.update(alias.name for alias in node.names)
        edges[name] = sorted(t for t in targets if t in modules and t != name)
    return edges


def _circles(modules: dict[str, Path]) -> list[list[str]]:
    """The import circles between ``modules``: their strongly connected sets (Tarjan), sorted."""
    edges = _import_graph(modules)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    circles = []

    def visit(name: str) -> None:
        index[name] = low[name] = len(index)
        stack.append(name)
        for other in edges[name]:
            if other not in index:
                visit(other)
                low[name] = min(low[name], low[other])
            elif other in stack:
                low[name] = min(low[name], index[other])
        if low[name] == index[name]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == name:
                    break
            if len(component) > 1:
                circles.append(sorted(component))

    for name in sorted(edges):
        if name not in index:
            visit(name)
    return circles


PACKAGES = sorted({_own_top(path) if (PACKAGE / _own_top(path)).is_dir() else "" for path in SOURCES})


@pytest.fixture(scope="module")
def circles() -> list[list[str]]:
    return _circles(MODULES)


@pytest.mark.parametrize("package", PACKAGES, ids=lambda p: p or "haq_rl")
def test_no_import_circle(package, circles):
    """No module of ``package`` (its own folder; "": haq_rl's top-level modules) is in an
    import circle with any module of haq_rl."""
    prefix = f"haq_rl.{package}." if package else "haq_rl."
    mine = [circle for circle in circles
            if any(m.startswith(prefix) and (package or m.count(".") == 1) for m in circle)]
    assert not mine, "import circle(s): " + "; ".join(" <-> ".join(circle) for circle in mine)


def test_the_circle_check_sees_a_circle(tmp_path):
    """Two modules importing each other lazily, one by ``from package import module``, are caught."""
    (tmp_path / "one.py").write_text("def f():\n    from haq_rl.sub import two\n")
    (tmp_path / "two.py").write_text("def f():\n    from haq_rl.one import f\n")
    modules = {**MODULES, "haq_rl.one": tmp_path / "one.py", "haq_rl.sub.two": tmp_path / "two.py"}
    assert ["haq_rl.one", "haq_rl.sub.two"] in _circles(modules)
