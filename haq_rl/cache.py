"""Where haq-rl caches pretrained float checkpoints and other derived files."""

from __future__ import annotations

import os
from pathlib import Path

from haq_rl.errors import ConfigError


def cache_dir(*parts: str) -> Path:
    """``$HAQ_RL_CACHE`` (default ``~/.cache/haq_rl``) joined with ``parts``, created."""
    root = Path(os.environ.get("HAQ_RL_CACHE", Path.home() / ".cache" / "haq_rl"))
    path = root.joinpath(*parts)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except FileExistsError:  # a file in the way (mkdir's own message names no culprit)
        raise ConfigError(f"cache folder {path} cannot be made: a file stands in its way "
                          f"(HAQ_RL_CACHE={root})") from None
    except OSError as error:
        if not path.is_dir():  # a complete read-only cache is fine: it already exists
            raise ConfigError(f"cache folder {path} cannot be made ({error.strerror}); set HAQ_RL_CACHE "
                              "to a writable folder") from None
    return path
