"""``--method tpe`` and ``--method nsga2``: Optuna's samplers over per-layer bits, as one proposer.

Every free layer's weight bits (and, unless the objective is weight-only, activation
bits) is an integer parameter in ``[min_bits, max_bits]``; each trial is one policy,
forced under its budget by the same action wall as an episode. The sampler and the
values each trial is told are the parameters; each method's row in
:mod:`haq_rl.search.methods` names its own entry point here:

* ``tpe``: the Tree-structured Parzen Estimator (Bergstra et al., NeurIPS 2011; Optuna's
  ``TPESampler`` with ``multivariate=True``, Falkner et al. 2018), maximising the reward.
  Option ``startup_trials`` (10): the random trials before TPE models the results.
* ``nsga2``: NSGA-II (Deb et al., IEEE TEC 2002; Optuna's ``NSGAIISampler``), two values
  per trial: the reward (maximised) and the cost ratio (minimised). Option
  ``population`` (16): the generation size.

One trial per evaluation, ``episodes`` trials, seeded: the same seed gives the same
trials. The loop (:mod:`haq_rl.search.loop`) asks ``workers`` trials at a time (TPE then
uses Optuna's constant liar, so one batch does not sample one spot N times), and a resumed
run asks the recorded trials again and tells their recorded values. In a conditioned run
(``--budgets``) trial ``k`` is walled at the budget the task's schedule gives episode
``k``, so every budget gets trials; each budget's best policy is the best trial within it.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from haq_rl.errors import MissingDependencyError
from haq_rl.search.config import SearchConfig
from haq_rl.search.loop import Proposal
from haq_rl.search.setup import SearchSetup
from haq_rl.task.budget import REFERENCE_BITS
from haq_rl.task.scoring import PolicyScorer

if TYPE_CHECKING:
    from haq_rl.search.methods import Nsga2Options, TpeOptions

logger = logging.getLogger(__name__)

#: The study's direction of each value a trial can be told.
DIRECTIONS = {"reward": "maximize", "cost_ratio": "minimize"}


def _optuna() -> Any:
    try:
        import optuna
    except ImportError:
        raise MissingDependencyError(
            "methods tpe and nsga2 need optuna: pip install 'haq-rl[tpe]' (or pip install optuna)") from None
    return optuna


def bit_distributions(scorer: PolicyScorer) -> dict[str, Any]:
    """One Optuna integer parameter per free layer's weight (and activation) bits."""
    optuna = _optuna()
    low, high = scorer.min_bits, scorer.max_bits
    distributions = {}
    for i in np.flatnonzero(~scorer.pinned):
        distributions[f"w:{scorer.layer_names[i]}"] = optuna.distributions.IntDistribution(low, high)
        if not scorer.weight_only:
            distributions[f"a:{scorer.layer_names[i]}"] = optuna.distributions.IntDistribution(low, high)
    return distributions


def policy_of_params(scorer: PolicyScorer, params: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    """The (w_bits, a_bits) a trial proposes: its parameters, pinned layers at 8."""
    w = np.full(len(scorer.layer_names), REFERENCE_BITS, dtype=np.int64)
    a = np.full(len(scorer.layer_names), REFERENCE_BITS, dtype=np.int64)
    for i in np.flatnonzero(~scorer.pinned):
        w[i] = params[f"w:{scorer.layer_names[i]}"]
        if not scorer.weight_only:
            a[i] = params[f"a:{scorer.layer_names[i]}"]
    return w, a


class OptunaProposer:
    """One Optuna study over ``sampler``, asked for trials and told each one's ``values``
    (keys of its score info, each in its :data:`DIRECTIONS`)."""

    def __init__(self, setup: SearchSetup, config: SearchConfig, sampler: Any, values: Sequence[str]) -> None:
        optuna = _optuna()
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        self._method = config.method
        self._scorers = setup.budgets
        self._seed = config.seed
        self._values = tuple(values)
        self._distributions = bit_distributions(setup.scorer)
        self._study = optuna.create_study(directions=[DIRECTIONS[v] for v in self._values], sampler=sampler)
        self._trials: list[Any] = []

    def ask(self, episode: int, count: int) -> list[Proposal]:
        self._trials = [self._study.ask(self._distributions) for _ in range(count)]
        proposals = []
        for k, trial in enumerate(self._trials, start=episode):
            budget = self._scorers.of_episode(self._seed, k)
            proposals.append(Proposal(*policy_of_params(self._scorers.at(budget), trial.params), self._method,
                                      budget=budget))
        return proposals

    def tell(self, proposals: list[Proposal], infos: list[dict[str, Any]]) -> None:
        for trial, info in zip(self._trials, infos, strict=True):  # in ask order
            self._study.tell(trial, [float(info[value]) for value in self._values])


def tpe_proposer(setup: SearchSetup, config: SearchConfig) -> OptunaProposer:
    """``--method tpe``: multivariate TPE maximising the reward (constant liar with several workers)."""
    options: TpeOptions = config.method_options()
    sampler = _optuna().samplers.TPESampler(multivariate=True, seed=config.seed,
                                            n_startup_trials=options.startup_trials,
                                            **({"constant_liar": True} if config.workers > 1 else {}))
    return OptunaProposer(setup, config, sampler, ["reward"])


def nsga2_proposer(setup: SearchSetup, config: SearchConfig) -> OptunaProposer:
    """``--method nsga2``: NSGA-II over the reward (maximised) and the cost ratio (minimised)."""
    options: Nsga2Options = config.method_options()
    sampler = _optuna().samplers.NSGAIISampler(population_size=options.population, seed=config.seed)
    return OptunaProposer(setup, config, sampler, ["reward", "cost_ratio"])
