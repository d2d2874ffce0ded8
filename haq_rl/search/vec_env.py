"""N copies of the search's env that step together and evaluate their episodes as one batch."""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING, Any

import numpy as np
from stable_baselines3.common.monitor import Monitor
from stable_baselines3.common.vec_env import DummyVecEnv

if TYPE_CHECKING:
    from haq_rl.env.quant_env import QuantizationEnv


class BatchedEpisodeVecEnv(DummyVecEnv):
    """``n_envs`` copies of ``env`` (one scorer, one task) for an SB3 agent that collects
    ``n_envs`` episodes per update.

    Every episode has the same length, so the copies end together. Before their last
    step the ``n_envs`` proposed policies are walled, each at its episode's budget, and
    evaluated as one batch (``BudgetScorers.prefetch``: in parallel through the evaluator's
    pool); each copy then finishes its episode through its own ``step``, which finds its
    scores in the memo, so each env's info (reward, applied actions) is the one a single env would report.
    """

    def __init__(self, env: QuantizationEnv, n_envs: int) -> None:
        # Deep copies of the episode state only: the scorer and task (model, data) are shared.
        shared: dict[int, Any] = {id(env.scorer): env.scorer, id(env.scorers): env.scorers, id(env.task): env.task}
        copies = [copy.deepcopy(env, memo=dict(shared)) for _ in range(n_envs)]
        super().__init__([lambda e=e: Monitor(e) for e in copies])  # type: ignore[misc]
        self._copies = copies
        self._scorers = env.scorers
        self._horizon = env.steps_per_episode
        self._episode_actions: list[list[np.ndarray]] = [[] for _ in range(n_envs)]

    @property
    def copies(self) -> list[QuantizationEnv]:
        """The env copies, in the order SB3 steps them."""
        return self._copies

    def start_schedule(self, seed: int, episode: int) -> None:
        """A conditioned env's budget schedule: copy ``i``'s next episode is ``episode + i``, and
        each batch after it ``n_envs`` episodes later (so episode ``k`` runs under the
        schedule's budget of ``k`` whatever the number of copies)."""
        for i, env in enumerate(self._copies):
            env.schedule_seed, env.episode_index = seed, episode + i

    def reset(self) -> Any:
        self._episode_actions = [[] for _ in range(self.num_envs)]
        return super().reset()

    def step_wait(self) -> Any:
        for actions, action in zip(self._episode_actions, self.actions, strict=True):
            actions.append(np.array(action, dtype=np.float32))
        if len(self._episode_actions[0]) == self._horizon:  # the last step: evaluate all together
            self._scorers.prefetch([(*env.bits_for(np.stack(actions)), env.episode_budget if env.conditioned else None)
                                    for env, actions in zip(self._copies, self._episode_actions, strict=True)])
            self._episode_actions = [[] for _ in range(self.num_envs)]
            for env in self._copies:  # each copy's reset (in step_wait) skips the other copies' episodes
                env.episode_index += self.num_envs - 1
        return super().step_wait()
