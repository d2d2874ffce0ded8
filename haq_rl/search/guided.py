"""The guided agent: HAQ's DDPG with its own defaults and two hooks, anchor and elite.

Guided is DDPG with settings pinned (the ``agent_defaults`` of its row in
:mod:`haq_rl.search.methods`, as SB3's DDPG is TD3 with settings pinned) and two
additions, the hooks of its row (:class:`GuidedHooks`, which the RL driver
:mod:`haq_rl.search.rl` calls as it calls any method's):

* **anchor**: its first episodes are the sensitivity integer program's policy at every
  budget (:func:`anchor_on_integer_program`); the warm-up explores around the anchor of
  each episode's budget, and the actor is fitted to reproduce them before any update;
* **elite**: after every update the actor imitates the best policy of every budget found
  so far (:func:`elite`; self-imitation, Oh et al. 2018).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import numpy as np

from haq_rl.search.hooks import AgentHooks
from haq_rl.search.recorder import Recorder

if TYPE_CHECKING:
    from haq_rl.search.config import SearchConfig
    from haq_rl.search.methods import GuidedOptions
    from haq_rl.search.setup import SearchSetup

logger = logging.getLogger(__name__)


def elite(env: Any, recorder: Recorder, budgets: tuple[float, ...]) -> tuple[np.ndarray, np.ndarray]:
    """Observations and actions of the best policy of every budget that has one, stacked."""
    observations, actions = [], []
    for budget in budgets:
        best = recorder.best_by_budget.get(budget)
        if best is None:
            continue
        best_actions = env.policy_actions(best["w_bits"], best["a_bits"])
        observations.append(env.observations_for(best_actions, budget=budget if env.conditioned else None))
        actions.append(best_actions)
    return np.concatenate(observations), np.concatenate(actions)


class GuidedHooks(AgentHooks):
    """The guided agent's hooks.

    * Before learning, one episode per budget: the integer program's policy, the anchor of
      that budget (:meth:`start`; a resumed run restores the anchors from its checkpoint).
    * At every rollout start, each worker's anchor becomes the anchor of its next
      episode's budget (conditioned runs; one-budget runs keep their one anchor).
    * After a step that ended an episode which improved some budget's best policy, the
      actor's elite set is the best policy of every budget (it imitates it after each update).
    """

    def __init__(self, setup: SearchSetup, config: SearchConfig, recorder: Recorder) -> None:
        super().__init__(setup, config, recorder)
        self._env: Any = setup.agent_env  # the QuantizationEnv, as SB3 callbacks see it
        self._budgets = setup.budgets.budgets
        self._anchors: dict[float, np.ndarray] = {}
        self._best: dict[float, int] = {}

    def warm_starts(self) -> int:
        return len(self._budgets)

    def start(self, agent: Any) -> None:
        self._anchors = anchor_on_integer_program(self._setup, self._config, self._recorder, agent, self._budgets)
        # Until each rollout sets its episodes' own (conditioned runs): the first budget's.
        agent.set_anchor(self._anchors[self._budgets[0]], sigma=anchor_sigma(self._config))

    def state(self) -> dict[str, Any]:
        return {"anchors": [[b, a.tolist()] for b, a in self._anchors.items()]} if self._env.conditioned else {}

    def restore(self, state: dict[str, Any]) -> None:
        self._anchors = {float(b): np.asarray(a, dtype=np.float32) for b, a in state.get("anchors", [])}

    def _best_episodes(self) -> dict[float, int]:
        return {budget: best["episode"] for budget, best in self._recorder.best_by_budget.items()}

    def _init_callback(self) -> None:  # learning starts: the elite the actor already has
        self._best = self._best_episodes()

    def _on_rollout_start(self) -> None:
        if self._env.conditioned and self._anchors:
            first, workers = self._recorder.count, self._config.workers
            stacked = [self._anchors[self._env.scorers.of_episode(self._config.seed, k)]
                       for k in range(first, first + workers)]
            self.model.set_anchor(stacked[0] if workers == 1 else np.stack(stacked),  # type: ignore[attr-defined]
                                  sigma=self.model.anchor_sigma)  # type: ignore[attr-defined]

    def _on_step(self) -> bool:
        if any(self.locals["dones"]):
            best = self._best_episodes()
            if best != self._best:  # a new best: the actor now imitates it (self-imitation of the elite)
                self._best = best
                self.model.set_elite(*elite(self._env, self._recorder, self._budgets))  # type: ignore[attr-defined]
        return True


def anchor_sigma(config: SearchConfig) -> float:
    """The warm-up noise around the anchor in SB3's [-1, 1] units (the option is in HAQ's [0, 1])."""
    options: GuidedOptions = config.method_options()
    return 2.0 * float(options.anchor_sigma)


def anchor_on_integer_program(setup: SearchSetup, config: SearchConfig, recorder: Recorder, agent: Any,
                              budgets: tuple[float, ...]) -> dict[float, np.ndarray]:
    """The guided agent's first episodes: the sensitivity integer program's policy at each budget.

    Their actions become the agent's anchors; the actor is fitted to reproduce them before
    any reinforcement-learning update, and they are its first elite. Returns budget ->
    anchor actions (the driver sets the anchor of each episode's budget).
    """
    from haq_rl.search.hawq import integer_program_policy, priced_layers

    env = setup.agent_env
    sensitivity, tied = priced_layers(setup, config)
    anchors: dict[float, np.ndarray] = {}
    for budget in budgets:
        w_bits, a_bits = integer_program_policy(setup.budgets.at(budget), sensitivity, tied=tied)
        actions = env.policy_actions(w_bits, a_bits)
        env.reset(seed=config.seed, options={"budget": budget} if env.conditioned else None)
        info: dict[str, Any] = {}
        for action in actions:
            _, _, _, _, info = env.step(action)
        recorder.record(info, "warm-start")
        anchors[budget] = actions
        logger.info("guided agent: integer-program policy at budget %g: %.2f%% at cost ratio %.3f",
                    budget, info["accuracy"], info["cost_ratio"])
    observations = np.concatenate([env.observations_for(anchors[b], budget=b if env.conditioned else None)
                                   for b in budgets])
    error = agent.imitate(observations, np.concatenate([anchors[b] for b in budgets]), sync_target=True)
    options: GuidedOptions = config.method_options()
    agent.set_elite(*elite(env, recorder, budgets), imitation_steps=options.imitation_steps)
    logger.info("guided agent: actor fitted to the integer-program policies (mse %.2g)", error)
    return anchors
