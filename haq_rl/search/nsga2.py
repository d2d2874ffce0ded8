"""``--method nsga2``: Optuna's NSGA-II over per-layer bits, maximising reward and minimising cost.

The multi-objective peer (Deb et al., IEEE TEC 2002; Optuna's ``NSGAIISampler``): the
same integer parameters as :mod:`haq_rl.search.tpe`, each trial forced under the
budget by the same action wall, and two values per trial: the episode's reward and its
cost ratio. One trial per evaluation, ``episodes`` trials. In a conditioned run
(``--budgets``) trial ``k`` is walled at the budget the env's schedule gives episode
``k`` (as random search does), so every budget gets trials; each budget's best policy is
the best trial within it, the whole front read off one study. Options: ``population``
(16), the generation size.
"""

from __future__ import annotations

from haq_rl.env.budgets import scheduled_budget
from haq_rl.search.config import SearchConfig
from haq_rl.search.recorder import Recorder
from haq_rl.search.setup import SearchSetup
from haq_rl.search.tpe import _optuna, bit_distributions, policy_of_params


def search_nsga2(setup: SearchSetup, config: SearchConfig, recorder: Recorder) -> None:
    """``config.episodes`` NSGA-II trials; a resumed run replays the recorded trials first."""
    optuna = _optuna()
    scorer = setup.scorer
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    sampler = optuna.samplers.NSGAIISampler(population_size=config.method_options()["population"],
                                            seed=config.seed)
    study = optuna.create_study(directions=["maximize", "minimize"], sampler=sampler)
    distributions = bit_distributions(scorer)
    for row in recorder.log.read_rows():  # resume: tell the study what was already tried
        params = {name: int(row[name]) for name in distributions}
        study.add_trial(optuna.trial.create_trial(params=params, distributions=distributions,
                                                  values=[float(row["reward"]), float(row["cost_ratio"])]))
    env = setup.env
    while recorder.count < config.episodes:
        trial = study.ask(distributions)
        if env.conditioned:
            scorer = env.scorer_at(scheduled_budget(env.budgets, config.seed, recorder.count))
        info = scorer.score(*policy_of_params(scorer, trial.params), enforce=True)
        study.tell(trial, [float(info["reward"]), float(info["cost_ratio"])])
        recorder.record(info, "nsga2")
