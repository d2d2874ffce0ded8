"""The one search loop of the methods that propose policies (everything but the RL agents).

A method is a :class:`Proposer` with an ask/tell contract, as Optuna's samplers are: it
proposes policies (:class:`Proposal`: bits, the budget they are walled at, a phase name)
and is told their scores; it never evaluates, records or resumes by itself. The loop
(:func:`run_proposals`) owns all of that, once for every method:

* **workers**: it asks for ``workers`` proposals at a time and evaluates them as one batch
  (``BudgetScorers.prefetch``: in parallel through the evaluator's pool);
* **budgets**: a proposal names its budget (the method takes it from the task's schedule,
  :class:`~haq_rl.task.conditioned.BudgetScorers`), and the loop walls and scores it there;
* **recording**: every scored proposal becomes one episodes.csv row, in ask order;
* **resume**: episodes.csv is the checkpoint. A resumed run asks the proposer again from
  the first episode and tells it the recorded rows instead of evaluating them, so a
  seeded proposer reaches the state it had and the run records the rows an
  uninterrupted run would (with the same ``workers``: a batch of asks sees no scores).
"""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from haq_rl.search.recorder import row_to_info

if TYPE_CHECKING:
    from haq_rl.search.config import SearchConfig
    from haq_rl.search.recorder import Recorder
    from haq_rl.search.setup import SearchSetup


@dataclass(frozen=True)
class Proposal:
    """One policy to evaluate: its bits, the budget its wall uses (None: the task's own)
    and whether the wall applies, and the ``phase`` its episodes.csv row names."""

    w_bits: np.ndarray
    a_bits: np.ndarray
    phase: str
    budget: float | None = None
    enforce: bool = True


class Proposer(Protocol):
    """A search method without an agent: proposes policies and learns from their scores."""

    def ask(self, episode: int, count: int) -> list[Proposal]:
        """Up to ``count`` proposals, the first of them episode ``episode``; [] when done."""
        ...

    def tell(self, proposals: list[Proposal], infos: list[dict[str, Any]]) -> None:
        """The scores of the last asked proposals (``PolicyScorer.score`` infos, or the
        rows a resumed run recorded: reward, accuracy, cost_ratio, bits)."""
        ...


#: A proposer written as a generator: it yields a batch of proposals and receives their infos.
ProposalSteps = Generator[list[Proposal], list[dict[str, Any]], None]


class SteppedProposer:
    """A :class:`Proposer` over a generator that yields batches of proposals.

    Sequential methods (greedy descent, uniform widths, the integer program) read best as a
    plain loop; this adapter hands out each yielded batch ``count`` at a time and sends the
    batch's infos back only once all of it is scored.
    """

    def __init__(self, steps: ProposalSteps) -> None:
        self._steps = steps
        self._pending: list[Proposal] = []
        self._infos: list[dict[str, Any]] = []
        self._batch = 0  # proposals of the current batch
        self._started = False

    def ask(self, episode: int, count: int) -> list[Proposal]:
        if not self._pending:
            try:
                batch = self._steps.send(self._infos) if self._started else next(self._steps)
            except StopIteration:
                return []
            self._started = True
            self._pending, self._infos, self._batch = list(batch), [], len(batch)
            if not batch:
                return []
        asked, self._pending = self._pending[:count], self._pending[count:]
        return asked

    def tell(self, proposals: list[Proposal], infos: list[dict[str, Any]]) -> None:
        self._infos.extend(infos)


def run_proposals(proposer: Proposer, setup: SearchSetup, config: SearchConfig, recorder: Recorder) -> None:
    """Ask, evaluate ``workers`` at a time, record and tell until ``config.episodes`` rows
    (or the proposer is done); a resumed run replays its recorded rows first."""
    layer_names = setup.scorer.layer_names
    recorded = [row_to_info(row, layer_names) for row in recorder.log.read_rows()] if recorder.count else []
    episode = 0
    while episode < config.episodes:
        proposals = proposer.ask(episode, min(config.workers, config.episodes - episode))
        if not proposals:
            break
        known = recorded[episode:episode + len(proposals)]
        infos = known + _evaluate(proposals[len(known):], setup)
        for info, proposal in zip(infos[len(known):], proposals[len(known):], strict=True):
            recorder.record(info, proposal.phase)
        proposer.tell(proposals, infos)
        episode += len(proposals)


def _evaluate(proposals: list[Proposal], setup: SearchSetup) -> list[dict[str, Any]]:
    """The scores of ``proposals``, evaluated as one batch, each walled at its own budget."""
    if not proposals:
        return []
    setup.budgets.prefetch([(p.w_bits, p.a_bits, p.budget) for p in proposals], [p.enforce for p in proposals])
    return [setup.budgets.at(p.budget).score(p.w_bits, p.a_bits, enforce=p.enforce) for p in proposals]
