"""The installed package must find envs/ and hw_profiles/ after a non-editable install."""

import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_wheel_ships_env_specs_and_hardware_profiles(tmp_path):
    subprocess.run([sys.executable, "-m", "pip", "wheel", str(ROOT), "--no-deps", "--no-build-isolation",
                    "-q", "-w", str(tmp_path)], check=True, capture_output=True)
    (wheel,) = tmp_path.glob("haq_rl-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for folder in ("envs", "hw_profiles"):
        shipped = {p.name for p in (ROOT / folder).iterdir() if p.suffix in (".yaml", ".csv", ".npy")}
        assert shipped and {f"haq_rl/resources/{folder}/{name}" for name in shipped} <= names
    # The shipped float models and their manifest (haq_rl.shipped_models).
    pretrained = {p.name for p in (ROOT / "haq_rl" / "resources" / "pretrained").iterdir()}
    assert "manifest.json" in pretrained and {f"haq_rl/resources/pretrained/{n}" for n in pretrained} <= names
    # The instant benchmark's tables and their manifest (haq_rl.supernet.tabulated).
    benchmark = {p.name for p in (ROOT / "haq_rl" / "resources" / "benchmark").iterdir()}
    assert "manifest.json" in benchmark and {f"haq_rl/resources/benchmark/{n}" for n in benchmark} <= names
    assert "haq_rl/cli.py" in names and any(n.endswith("entry_points.txt") for n in names)
    # Every subpackage (setup.cfg lists them one by one).
    subpackages = {p.parent.relative_to(ROOT).as_posix() for p in (ROOT / "haq_rl").glob("*/__init__.py")}
    assert {f"{package}/__init__.py" for package in subpackages} <= names
