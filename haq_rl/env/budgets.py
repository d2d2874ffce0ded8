"""The budget schedule of a budget-conditioned env: which budget each episode runs under."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def scheduled_budget(budgets: Sequence[float], seed: int, episode: int) -> float:
    """The budget of episode ``episode``: blocks of ``len(budgets)`` episodes, each a permutation.

    Sampled, but balanced (every budget once per block) and a pure function of
    ``(seed, episode)``: a resumed search gives each episode the budget it had.
    """
    block, position = divmod(int(episode), len(budgets))
    order = np.random.default_rng([int(seed), block]).permutation(len(budgets))
    return float(budgets[int(order[position])])
