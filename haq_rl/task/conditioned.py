"""A budget-conditioned task: one scorer per budget, and the schedule of episode budgets.

A conditioned search (``--budgets``) evaluates each episode under one budget. Which
budget episode ``k`` runs under is a pure function of ``(seed, k)``
(:func:`scheduled_budget`), so a resumed search, a run with several workers and a method
without an env all give each episode the same budget. The scorers share one evaluator
(and its memo): a policy evaluated under one budget is not evaluated again under another.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from haq_rl.errors import BudgetError
from haq_rl.task.scoring import PolicyScorer


def scheduled_budget(budgets: Sequence[float], seed: int, episode: int) -> float:
    """The budget of episode ``episode``: blocks of ``len(budgets)`` episodes, each a permutation.

    Sampled, but balanced (every budget once per block) and a pure function of
    ``(seed, episode)``: a resumed search gives each episode the budget it had.
    """
    block, position = divmod(int(episode), len(budgets))
    order = np.random.default_rng([int(seed), block]).permutation(len(budgets))
    return float(budgets[int(order[position])])


class BudgetScorers:
    """The scorers of a task under each of ``budgets`` (ratios of 8/8, ascending).

    Without budgets (one-budget search) :attr:`budgets` is the scorer's own budget and
    :meth:`at` / :meth:`of_episode` give ``scorer`` itself.
    """

    def __init__(self, scorer: PolicyScorer, budgets: Sequence[float] = ()) -> None:
        self.scorer = scorer
        self.conditioned = bool(budgets)
        self.budgets: tuple[float, ...] = tuple(float(b) for b in budgets) or (scorer.budget_ratio,)
        self._scorers: dict[float, PolicyScorer] = {}
        for budget in budgets:
            self.at(budget)  # an infeasible listed budget fails now

    def at(self, budget: float | None) -> PolicyScorer:
        """The scorer under ``budget`` (cached; None or an unconditioned task: the task's own)."""
        if budget is None or not self.conditioned:
            return self.scorer
        scorer = self._scorers.get(budget)
        if scorer is None:
            try:
                scorer = self.scorer.at_budget(budget)
            except BudgetError as error:
                raise BudgetError(f"budgets entry {budget:g}: {error}") from None
            self._scorers[budget] = scorer
        return scorer

    def prefetch(self, policies: Sequence[tuple[np.ndarray, np.ndarray, float | None]],
                 enforce: Sequence[bool] | None = None) -> None:
        """Evaluate ``policies`` (bits and the budget each is scored at; None: the task's) as one
        batch, in parallel when the evaluator has a pool, each walled at its own budget unless
        its ``enforce`` is False; the :meth:`PolicyScorer.score` calls that follow only look
        them up. The one prefetch of a search (the proposers' loop and the RL workers' env): a
        policy walled at another budget than its own would miss the memo and be evaluated again.
        """
        walls = [True] * len(policies) if enforce is None else enforce
        walled = [self.at(budget).apply_wall(np.asarray(w), np.asarray(a))[:2] if wall else (w, a)
                  for (w, a, budget), wall in zip(policies, walls, strict=True)]
        self.scorer.prefetch(walled, enforce=False)

    def of_episode(self, seed: int, episode: int) -> float | None:
        """The budget episode ``episode`` of a search seeded ``seed`` runs under (None: unconditioned)."""
        return scheduled_budget(self.budgets, seed, episode) if self.conditioned else None
