"""AgentHooks: what a method row adds to the RL driver, as one SB3 callback with three hooks.

An RL method is SB3's learn loop with settings pinned (the row's ``agent_defaults``) and,
where it needs more, hooks (the row's ``callback``, a subclass of :class:`AgentHooks`), as
SB3's DDPG is TD3 with settings pinned: the driver (:mod:`haq_rl.search.rl`) calls the
same hooks for every method and never asks which one it runs. The defaults add nothing
(HAQ's DDPG, TD3 and SAC); the guided agent's anchor and elite are
:class:`haq_rl.search.guided.GuidedHooks`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from stable_baselines3.common.callbacks import BaseCallback

if TYPE_CHECKING:
    from haq_rl.search.config import SearchConfig
    from haq_rl.search.recorder import Recorder
    from haq_rl.search.setup import SearchSetup


class AgentHooks(BaseCallback):
    """An RL method's additions to the driver; SB3 calls the callback methods while it learns.

    The driver calls, in this order: :meth:`warm_starts` (episodes the hooks record before
    learning), then :meth:`start` with a new agent or :meth:`restore` with a resumed run's
    checkpoint state, then learns with this callback, saving :meth:`state` at each
    checkpoint.
    """

    def __init__(self, setup: SearchSetup, config: SearchConfig, recorder: Recorder) -> None:
        super().__init__()
        self._setup, self._config, self._recorder = setup, config, recorder

    def warm_starts(self) -> int:
        """The episodes :meth:`start` records before the agent learns."""
        return 0

    def start(self, agent: Any) -> None:
        """A new agent (not a resumed one), before its first learning episode."""

    def state(self) -> dict[str, Any]:
        """What the checkpoint keeps of the hooks (JSON values), given to :meth:`restore` on resume."""
        return {}

    def restore(self, state: dict[str, Any]) -> None:
        """The hooks' :meth:`state` from the checkpoint a resumed run continues."""

    def _on_step(self) -> bool:
        return True
