"""Smoke tests of the example notebooks: they run top to bottom on tiny budgets.

Each notebook is executed with nbclient in a fresh kernel running *this* interpreter
(a kernelspec written to a temporary folder, so no user-level kernel registration is
needed or used), with ``HAQ_RL_NOTEBOOK_TINY=1`` and its results under ``tmp_path``.
A second test checks that the committed notebooks carry no outputs (regenerate them
with ``python notebooks/_build_notebooks.py``).
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")

NOTEBOOK_DIR = Path(__file__).resolve().parent.parent / "notebooks"
NOTEBOOKS = ["01_quickstart.ipynb", "02_inspect_policies.ipynb", "03_env_for_rl_research.ipynb",
             "04_bring_your_own_model.ipynb"]
CELL_TIMEOUT_S = 600


def _kernel_manager(kernel_dir: Path):
    """A KernelManager whose only kernel, "python3", is this interpreter with ipykernel."""
    from jupyter_client.kernelspec import KernelSpecManager
    from jupyter_client.manager import KernelManager

    spec_dir = kernel_dir / "python3"
    spec_dir.mkdir(parents=True)
    (spec_dir / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "Python 3 (test)", "language": "python",
    }))
    specs = KernelSpecManager(kernel_dirs=[str(kernel_dir)], ensure_native_kernel=False)
    return KernelManager(kernel_name="python3", kernel_spec_manager=specs)


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_runs(name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HAQ_RL_NOTEBOOK_TINY", "1")
    monkeypatch.setenv("HAQ_RL_NOTEBOOK_OUT", str(tmp_path / "out"))
    notebook = nbformat.read(NOTEBOOK_DIR / name, as_version=4)
    client = nbclient.NotebookClient(
        notebook, km=_kernel_manager(tmp_path / "kernels"), kernel_name="python3",
        timeout=CELL_TIMEOUT_S, allow_errors=False,
        resources={"metadata": {"path": str(NOTEBOOK_DIR)}})
    started = time.perf_counter()
    try:
        client.execute()  # raises CellExecutionError naming the cell on any error
    finally:
        if client.km is not None and client.km.has_kernel:  # a km passed in is ours to shut down
            client.km.shutdown_kernel(now=True)
    elapsed = time.perf_counter() - started
    print(f"{name}: {elapsed:.1f} s")

    outputs = [out for cell in notebook.cells if cell.cell_type == "code" for out in cell.get("outputs", [])]
    assert not [out for out in outputs if out.get("output_type") == "error"]
    images = [out for out in outputs if "image/png" in out.get("data", {})]
    assert images, f"{name} displayed no figure"
    # Results went to the output folder, not into the repository.
    assert any((tmp_path / "out").iterdir())


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_committed_without_outputs(name: str) -> None:
    notebook = nbformat.read(NOTEBOOK_DIR / name, as_version=4)
    nbformat.validate(notebook)
    assert notebook.metadata.get("kernelspec", {}).get("name") == "python3"
    for index, cell in enumerate(notebook.cells):
        if cell.cell_type != "code":
            continue
        assert cell.get("outputs") == [], f"{name} cell {index} has outputs: rerun notebooks/_build_notebooks.py"
        assert cell.get("execution_count") is None, f"{name} cell {index} has an execution count"


def test_notebooks_match_generator() -> None:
    """The committed notebooks are what notebooks/_build_notebooks.py writes."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("_build_notebooks", NOTEBOOK_DIR / "_build_notebooks.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert sorted(module.NOTEBOOKS) == NOTEBOOKS
    for name, cells in module.NOTEBOOKS.items():
        expected = module.build(name, cells)
        committed = nbformat.read(NOTEBOOK_DIR / name, as_version=4)
        assert [c.source for c in committed.cells] == [c.source for c in expected.cells], (
            f"{name} differs from notebooks/_build_notebooks.py: regenerate it")
