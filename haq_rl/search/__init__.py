"""The search: HAQ's RL agent and every baseline in one harness.

Every method scores policies through the same environment (same evaluator, same
action wall, same cost table) and writes the same run directory:

    config.json        the search and env settings
    episodes.csv       one row per evaluated policy (episode, phase, reward, accuracy,
                       cost ratio, latency, energy, size, BOPs, bits of every layer)
    best_policy.json   the best policy that meets the budget (QuantPolicy JSON)
    front.csv          (conditioned runs, ``budgets``) the best policy per budget, with
    budget-<B>/        one folder per budget holding its best_policy.json
    agent.pt           the agent's state_dicts (RL methods), plus actor.pt (the actor
    actor.pt           alone), replay_buffer.npz (arrays) and search_state.json: the
    search_state.json  checkpoint used by ``--resume``; no file holds a pickle

Methods (the table in :mod:`.methods`): ``guided`` (the default: DDPG anchored on the
integer program, :mod:`.guided`), ``ddpg`` (HAQ), ``td3``, ``sac``: one RL driver
(:mod:`.rl`); ``random``, ``uniform``, ``greedy`` (:mod:`.baselines`); ``hawq``,
sensitivity + integer program (:mod:`.hawq`); ``tpe`` and ``nsga2``, Optuna's samplers
(:mod:`.samplers`). All but the RL agents are proposers in one loop (:mod:`.loop`).
:func:`budget_policy` picks one budget of a conditioned run (:mod:`.budget_policy`). With
``workers > 1`` every method evaluates in parallel (:mod:`haq_rl.parallel`); the RL
methods then collect ``workers`` episodes per update (:mod:`.vec_env`).
"""

from haq_rl.search.budget_policy import budget_policy
from haq_rl.search.config import SearchConfig
from haq_rl.search.harness import SearchResult, run_search
from haq_rl.search.methods import (
    BASELINE_METHODS,
    CONDITIONED_METHODS,
    METHOD_OPTIONS,
    METHOD_TABLE,
    METHODS,
    RL_METHODS,
)

__all__ = [
    "BASELINE_METHODS",
    "CONDITIONED_METHODS",
    "METHODS",
    "METHOD_OPTIONS",
    "METHOD_TABLE",
    "RL_METHODS",
    "SearchConfig",
    "SearchResult",
    "budget_policy",
    "run_search",
]
