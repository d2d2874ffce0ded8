"""The search's progress bar (episodes done, best policy so far)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from haq_rl.search.harness import SearchConfig

class _ProgressBar:
    def __init__(self, total: int, desc: str) -> None:
        self.total = total
        self.desc = desc
        self.bar: Any = None

    def start(self, done: int) -> None:
        from tqdm.auto import tqdm

        self.bar = tqdm(total=self.total, initial=done, desc=self.desc, unit="ep", dynamic_ncols=True)

    def update_info(self, info: dict[str, Any]) -> None:
        if self.bar is None:
            return
        self.bar.n = min(info["episode"], self.total)
        if "reward" in info:
            self.bar.set_postfix(best_reward=f"{info['reward']:.3f}", best_acc=f"{info['accuracy']:.2f}",
                                 cost_ratio=f"{info['cost_ratio']:.3f}", refresh=False)
        self.bar.refresh()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def progress_bar(config: SearchConfig) -> _ProgressBar | None:
    return _ProgressBar(config.episodes, f"search {config.method}") if config.progress else None
