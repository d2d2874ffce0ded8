"""The one episode progress bar: episodes done and the best policy so far (tqdm).

The search drives it from its recorder (every method); the agent's SB3 callback
(:class:`haq_rl.agent.EpisodeProgressBar`) drives it from ``learn()``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


class EpisodeBar:
    """A tqdm bar over ``total`` episodes whose postfix shows ``fields`` of the best episode.

    ``disable`` hides it (None: tqdm's default, hidden when not a terminal).
    """

    def __init__(self, total: int, desc: str, disable: bool | None = False) -> None:
        self.total = int(total)
        self.desc = desc
        self.disable = disable
        self._bar: Any = None

    def start(self, done: int = 0) -> None:
        from tqdm.auto import tqdm

        self._bar = tqdm(total=self.total, initial=done, desc=self.desc, unit="ep", dynamic_ncols=True,
                         disable=self.disable)

    def show(self, done: int, postfix: Mapping[str, Any]) -> None:
        """Move to ``done`` episodes; ``postfix`` values are formatted to 4 significant digits."""
        if self._bar is None:
            return
        self._bar.n = min(done, self.total)
        self._bar.set_postfix({key: f"{value:.4g}" if isinstance(value, float | int) else value
                               for key, value in postfix.items()}, refresh=False)
        self._bar.refresh()

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
