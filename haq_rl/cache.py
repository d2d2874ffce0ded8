"""Where haq-rl caches pretrained float checkpoints and other derived files."""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir(*parts: str) -> Path:
    """``$HAQ_RL_CACHE`` (default ``~/.cache/haq_rl``) joined with ``parts``, created."""
    root = Path(os.environ.get("HAQ_RL_CACHE", Path.home() / ".cache" / "haq_rl"))
    path = root.joinpath(*parts)
    path.mkdir(parents=True, exist_ok=True)
    return path
