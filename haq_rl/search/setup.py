"""What a method searches with: the task, its scorer, the budgets and the Gymnasium env."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from haq_rl.env.quant_env import QuantizationEnv
    from haq_rl.task.scoring import PolicyScorer
    from haq_rl.task.task import Task


@dataclass
class SearchSetup:
    """What a method searches with: the task, its scorer and the Gymnasium env over both.

    Baselines score policies with ``scorer``; the RL methods step ``env``, whose episodes
    end in the same ``scorer.score``.
    """

    task: Task
    scorer: PolicyScorer
    env: QuantizationEnv
