"""``--method tpe``: Optuna's Tree-structured Parzen Estimator over per-layer bits.

The black-box peer (Bergstra et al., NeurIPS 2011; Optuna's ``TPESampler`` with
``multivariate=True``, Falkner et al. 2018). Every free layer's weight bits (and, unless
the objective is weight-only, activation bits) is an integer parameter in
``[min_bits, max_bits]``; each trial is one policy, forced under the budget by the same
action wall as an episode, and its value is the episode's reward. One trial per
evaluation, ``episodes`` trials; seeded, so the same seed gives the same trials.
Options (``--option KEY=VALUE``): ``startup_trials`` (10), the random trials before TPE
models the results.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from haq_rl.errors import MissingDependencyError
from haq_rl.search.config import SearchConfig
from haq_rl.search.recorder import Recorder
from haq_rl.search.setup import SearchSetup
from haq_rl.task.budget import REFERENCE_BITS
from haq_rl.task.scoring import PolicyScorer

logger = logging.getLogger(__name__)


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


def search_tpe(setup: SearchSetup, config: SearchConfig, recorder: Recorder) -> None:
    """``config.episodes`` TPE trials; a resumed run replays the recorded trials first."""
    optuna = _optuna()
    scorer = setup.scorer
    startup = config.method_options()["startup_trials"]
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    # With several workers, trials are asked for in batches; the constant liar counts the
    # batch's unfinished trials as bad ones, so one batch does not sample the same spot N times.
    sampler = optuna.samplers.TPESampler(multivariate=True, seed=config.seed, n_startup_trials=startup,
                                         **({"constant_liar": True} if config.workers > 1 else {}))
    study = optuna.create_study(direction="maximize", sampler=sampler)
    distributions = bit_distributions(scorer)
    for row in recorder.log.read_rows():  # resume: tell the study what was already tried
        params = {name: int(row[name]) for name in distributions}
        study.add_trial(optuna.trial.create_trial(params=params, distributions=distributions,
                                                  value=float(row["reward"])))
    while recorder.count < config.episodes:
        # Optuna's batch ask/tell: ``workers`` trials evaluated together, told in ask order.
        trials = [study.ask(distributions) for _ in range(min(config.workers, config.episodes - recorder.count))]
        policies = [policy_of_params(scorer, trial.params) for trial in trials]
        scorer.prefetch(policies, enforce=True)
        for trial, (w, a) in zip(trials, policies, strict=True):
            info = scorer.score(w, a, enforce=True)
            study.tell(trial, float(info["reward"]))
            recorder.record(info, "tpe")
