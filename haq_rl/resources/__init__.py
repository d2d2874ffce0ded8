"""Location of the data directories shipped with haq-rl (``envs/`` and ``hw_profiles/``).

In a source checkout or editable install they are the top-level folders of the
repository; a regular ``pip install .`` copies them into this package (see setup.cfg's
``package_dir``), so both layouts are looked up here.
"""

from __future__ import annotations

from pathlib import Path

_PACKAGE_DIR = Path(__file__).resolve().parent
_REPO_ROOT = _PACKAGE_DIR.parent.parent


def resource_dir(kind: str) -> Path:
    """Return the directory holding the shipped ``kind`` files ("envs" or "hw_profiles")."""
    if kind not in ("envs", "hw_profiles"):
        raise ValueError(f"unknown resource kind {kind!r}; allowed: 'envs', 'hw_profiles'")
    for candidate in (_PACKAGE_DIR / kind, _REPO_ROOT / kind):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError(f"haq-rl data folder {kind!r} not found next to the package ({_PACKAGE_DIR})")
