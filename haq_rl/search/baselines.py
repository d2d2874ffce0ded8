"""Baselines that need no learning, as proposers (:mod:`haq_rl.search.loop`): random,
uniform and greedy.

Each takes ``--budgets`` and ``--workers`` through the loop: a proposal names the budget
it is walled at, and the loop evaluates ``workers`` proposals at a time.
"""

from __future__ import annotations

import heapq
from typing import TYPE_CHECKING, Any

import numpy as np

from haq_rl.search.loop import Proposal, ProposalSteps, SteppedProposer
from haq_rl.task.budget import REFERENCE_BITS
from haq_rl.task.steps import bits_of_actions, step_schedule

if TYPE_CHECKING:
    from haq_rl.search.config import SearchConfig
    from haq_rl.search.setup import SearchSetup
    from haq_rl.task.scoring import PolicyScorer


class RandomProposer:
    """Uniform random actions per step, turned into bits as an env episode would, walled.

    Episode ``i``'s actions depend on ``(seed, i)`` alone, and so does its budget in a
    conditioned run (the task's schedule), so a resumed run and a run with several workers
    record the same rows.
    """

    def __init__(self, setup: SearchSetup, config: SearchConfig) -> None:
        scorer = setup.scorer
        self._scorers = setup.budgets
        self._seed = config.seed
        self._schedule = step_schedule(scorer.pinned, scorer.weight_only, setup.task.spec.step_mode)
        self._action_dim = 2 if setup.task.spec.step_mode == "joint" else 1
        self._bits = (len(scorer.layer_names), scorer.min_bits, scorer.max_bits, REFERENCE_BITS)

    def ask(self, episode: int, count: int) -> list[Proposal]:
        proposals = []
        for k in range(episode, episode + count):
            actions = random_actions(self._seed, k, len(self._schedule), self._action_dim)
            w, a = bits_of_actions(self._schedule, actions, *self._bits)
            proposals.append(Proposal(w, a, "random", budget=self._scorers.of_episode(self._seed, k)))
        return proposals

    def tell(self, proposals: list[Proposal], infos: list[dict[str, Any]]) -> None:
        """Random search learns nothing."""


def random_actions(seed: int, episode: int, steps: int, action_dim: int) -> np.ndarray:
    """The actions of random episode ``episode`` (one row per step): one generator per (seed, episode)."""
    rng = np.random.default_rng([seed, episode])
    return np.stack([rng.uniform(-1, 1, size=(action_dim,)).astype(np.float32) for _ in range(steps)])


def random_proposer(setup: SearchSetup, config: SearchConfig) -> RandomProposer:
    return RandomProposer(setup, config)


def uniform_proposer(setup: SearchSetup, config: SearchConfig) -> SteppedProposer:
    return SteppedProposer(_uniform_steps(setup))


def _uniform_steps(setup: SearchSetup) -> ProposalSteps:
    """The largest uniform bits within budget first, then the other uniform widths.

    The choice needs only the cost table; the other widths (while ``episodes`` lasts)
    are evaluated as reference points for reports. Conditioned runs evaluate every width
    as it is (each counts for the budgets it meets), then the walled minimum width at
    each budget no width meets.
    """
    scorer = setup.scorer
    widths = list(range(scorer.max_bits, scorer.min_bits - 1, -1))
    if setup.budgets.conditioned:
        infos = yield [Proposal(*scorer.uniform(bits), "uniform", enforce=False) for bits in widths]
        for budget in setup.budgets.budgets:  # ascending: a fallback meets every looser budget too
            if not any(scorer.is_within(i["cost_ratio"], i.get("cost_ratios"), budget=budget) for i in infos):
                infos += yield [Proposal(*scorer.uniform(scorer.min_bits), "uniform", budget=budget)]
        return
    largest = scorer.largest_uniform()
    chosen = largest if largest is not None else scorer.min_bits
    order = [chosen, *(b for b in widths if b != chosen)]
    yield [Proposal(*scorer.uniform(bits), "uniform", enforce=largest is None) for bits in order]


def greedy_proposer(setup: SearchSetup, config: SearchConfig) -> SteppedProposer:
    # A conditioned run descends once, to the tightest budget: every policy on the way
    # counts for each looser budget it meets (the recorder's rule), so one path serves all.
    budget = setup.budgets.budgets[0] if setup.budgets.conditioned else None
    return SteppedProposer(_greedy_steps(setup.budgets.at(budget), budget, config.episodes))


def _greedy_steps(scorer: PolicyScorer, budget: float | None, episodes: int) -> ProposalSteps:
    """Start at 8/8; repeatedly lower the bit with the least accuracy lost per cost saved.

    Lazy greedy: every knob (a layer's weight or activation bits) is scored once, then
    only the chosen knob is re-scored after each change, so the search costs about one
    evaluation per lowered bit. Stops within budget, or when the evaluation budget
    (``episodes``) runs out, in which case the action wall finishes the job. The first
    scoring of all knobs, and each step's two evaluations, are one batch each.
    """
    def proposal(w: np.ndarray, a: np.ndarray, enforce: bool = False) -> Proposal:
        return Proposal(w.copy(), a.copy(), "greedy", budget=budget, enforce=enforce)

    w, a = scorer.uniform(scorer.max_bits)
    free = [i for i in range(len(w)) if not scorer.pinned[i]]
    knobs = [(i, 0) for i in free] + ([] if scorer.weight_only else [(i, 1) for i in free])
    limit = episodes - 1  # keep one evaluation for the action wall at the end
    trials: list[tuple[tuple[int, int], tuple[np.ndarray, np.ndarray]]] = []
    if scorer.wall_cost(w, a) > scorer.wall_budget:  # every knob one bit lower, while the budget lasts
        trials = [(knob, trial) for knob in knobs if (trial := _lowered(w, a, knob, scorer.min_bits)) is not None]
        trials = trials[:max(limit - 1, 0)]
    infos = yield [proposal(w, a), *(proposal(*trial) for _, trial in trials)]
    count, current = len(infos), infos[0]

    def value(info: dict[str, Any], trial: tuple[np.ndarray, np.ndarray]) -> float:
        saved = scorer.wall_cost(w, a) - scorer.wall_cost(*trial)
        lost = current["accuracy"] - info["accuracy"]
        return lost / saved if saved > 0 else float("inf")

    heap = [(value(info, trial), *knob) for (knob, trial), info in zip(trials, infos[1:], strict=True)]
    heapq.heapify(heap)
    while heap and scorer.wall_cost(w, a) > scorer.wall_budget and count < limit:
        _, layer, part = heapq.heappop(heap)
        (w, a)[part][layer] -= 1
        again = _lowered(w, a, (layer, part), scorer.min_bits) if count + 1 < limit else None
        infos = yield [proposal(w, a), *([proposal(*again)] if again is not None else [])]
        count, current = count + len(infos), infos[0]
        if again is not None:
            heapq.heappush(heap, (value(infos[1], again), layer, part))
    if scorer.wall_cost(w, a) > scorer.wall_budget:
        yield [proposal(w, a, enforce=True)]


def _lowered(w: np.ndarray, a: np.ndarray, knob: tuple[int, int], min_bits: int) -> tuple[np.ndarray, np.ndarray] | None:
    """The policy with ``knob`` (layer, 0 = weight / 1 = activation) one bit lower; None at the minimum."""
    layer, part = knob
    if (w, a)[part][layer] <= min_bits:
        return None
    trial_w, trial_a = w.copy(), a.copy()
    (trial_w, trial_a)[part][layer] -= 1
    return trial_w, trial_a

