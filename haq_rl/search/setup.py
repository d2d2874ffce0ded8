"""What a method searches with: the task, its scorer per budget, the run directory and,
for the RL methods, the Gymnasium env."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from haq_rl.task.conditioned import BudgetScorers

if TYPE_CHECKING:
    from haq_rl.env.quant_env import QuantizationEnv
    from haq_rl.task.scoring import PolicyScorer
    from haq_rl.task.task import Task


@dataclass
class SearchSetup:
    """What a method searches with.

    ``scorer`` scores under the task's budget; ``scorers`` under each budget of a
    conditioned task, with its budget schedule (default: the env's, else built from the
    task's spec). Proposers never touch ``env``: only the RL methods, which step it,
    get one (None otherwise, so the non-RL methods load no gymnasium). ``run_dir`` is where
    a method writes its own files (sensitivity.csv, the agent's checkpoint).
    """

    task: Task
    scorer: PolicyScorer
    env: QuantizationEnv | None = None
    scorers: BudgetScorers | None = None
    run_dir: Path | None = None

    def __post_init__(self) -> None:
        if self.scorers is None:
            self.scorers = self.env.scorers if self.env is not None else \
                BudgetScorers(self.scorer, self.task.spec.budgets or ())

    @property
    def agent_env(self) -> QuantizationEnv:
        """``env``, for the RL drivers (which the harness always gives one)."""
        assert self.env is not None, "an RL method needs the env"
        return self.env

    @property
    def budgets(self) -> BudgetScorers:
        """``scorers``, typed (always set after construction)."""
        assert self.scorers is not None
        return self.scorers
