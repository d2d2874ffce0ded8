"""Baselines that need no learning: random (through the env), uniform and greedy (through the scorer)."""

from __future__ import annotations

import heapq
from typing import Any

import numpy as np

from haq_rl.env.budgets import scheduled_budget
from haq_rl.search.config import SearchConfig
from haq_rl.search.recorder import Recorder
from haq_rl.search.setup import SearchSetup


def search_random(setup: SearchSetup, config: SearchConfig, recorder: Recorder) -> None:
    """Uniform random actions, wall-enforced, for the same number of episodes.

    Episode ``i``'s actions depend on ``(seed, i)`` alone, so a resumed run and a run with
    several workers (batches of ``workers`` episodes evaluated together) record the same
    rows. Conditioned runs wall each episode at the budget the env's schedule gives it.
    """
    env = setup.env
    while recorder.count < config.episodes:
        batch = range(recorder.count, min(recorder.count + config.workers, config.episodes))
        plans = [_random_actions(config.seed, episode, env.steps_per_episode, env.action_dim) for episode in batch]
        budgets = [scheduled_budget(env.budgets, config.seed, episode) if env.conditioned else None
                   for episode in batch]
        walled = [(env.scorer_at(budget) if budget is not None else setup.scorer).apply_wall(
            *env.bits_for(actions))[:2] for actions, budget in zip(plans, budgets, strict=True)]
        setup.scorer.prefetch(walled, enforce=False)
        for episode, actions, budget in zip(batch, plans, budgets, strict=True):
            env.reset(seed=config.seed + episode, options=None if budget is None else {"budget": budget})
            info: dict[str, Any] = {}
            for action in actions:
                _, _, _, _, info = env.step(action)
            recorder.record(info, "random")


def _random_actions(seed: int, episode: int, steps: int, action_dim: int) -> np.ndarray:
    """The actions of random episode ``episode`` (one row per step): one generator per (seed, episode)."""
    rng = np.random.default_rng([seed, episode])
    return np.stack([rng.uniform(-1, 1, size=(action_dim,)).astype(np.float32) for _ in range(steps)])


def search_uniform(setup: SearchSetup, config: SearchConfig, recorder: Recorder) -> None:
    """The largest uniform bits within budget first, then the other uniform widths.

    The choice needs only the cost table; the other widths (while ``episodes`` lasts)
    are evaluated as reference points for reports. Conditioned runs evaluate every width
    as it is (each counts for the budgets it meets), then the walled minimum width at
    each budget no width meets.
    """
    scorer = setup.scorer
    if setup.env.conditioned:
        widths = list(range(scorer.max_bits, scorer.min_bits - 1, -1))[recorder.count:config.episodes]
        for info in scorer.score_many([scorer.uniform(bits) for bits in widths], enforce=False):
            recorder.record(info, "uniform")  # a resumed run continues after the widths on disk
        for budget in setup.env.budgets:
            if budget not in recorder.best_by_budget and recorder.count < config.episodes:
                recorder.record(setup.env.scorer_at(budget).score(*scorer.uniform(scorer.min_bits)), "uniform")
        return
    widths = list(range(scorer.max_bits, scorer.min_bits - 1, -1))
    largest = scorer.largest_uniform()
    feasible = largest is not None
    chosen = largest if largest is not None else scorer.min_bits
    # A resumed run holds the first rows of this fixed order already: continue after them.
    order = [chosen, *(b for b in widths if b != chosen)][recorder.count:config.episodes]
    infos = scorer.score_many([scorer.uniform(bits) for bits in order], enforce=not feasible)
    for info in infos:
        recorder.record(info, "uniform")


def search_greedy(setup: SearchSetup, config: SearchConfig, recorder: Recorder) -> None:
    """Start at 8/8; repeatedly lower the bit with the least accuracy lost per cost saved.

    Lazy greedy: every knob (a layer's weight or activation bits) is scored once, then
    only the chosen knob is re-scored after each change, so the search costs about one
    evaluation per lowered bit. Stops within budget, or when the evaluation budget
    (``episodes``) runs out, in which case the action wall finishes the job. With several
    workers the first scoring of all knobs, and each step's two evaluations, run as batches
    (the same policies in the same order as one worker's, so the same rows).
    """
    scorer = setup.scorer
    if recorder.count:  # resumed: greedy is deterministic, so it starts over (the same rows)
        recorder.log.truncate(0)
        recorder.reset_from_log()
    w, a = scorer.uniform(scorer.max_bits)
    free = [i for i in range(len(w)) if not scorer.pinned[i]]
    knobs = [(i, 0) for i in free] + ([] if scorer.weight_only else [(i, 1) for i in free])
    limit = config.episodes - 1  # keep one evaluation for the action wall at the end
    first: list[tuple[np.ndarray, np.ndarray]] = [(w, a)]
    if scorer.cost(w, a) > scorer.budget_cost:  # the knobs the loop below scores, in its order
        trials = (_lowered(w, a, knob, scorer.min_bits) for knob in knobs)
        first += [trial for trial in trials if trial is not None][:max(limit - recorder.count - 1, 0)]
    scorer.prefetch(first, enforce=False)
    current = scorer.score(w, a, enforce=False)
    recorder.record(current, "greedy")

    def score(knob: tuple[int, int]) -> float | None:
        trial = _lowered(w, a, knob, scorer.min_bits)
        if trial is None:
            return None
        saved = scorer.wall_cost(w, a) - scorer.wall_cost(*trial)
        info = scorer.score(*trial, enforce=False)
        recorder.record(info, "greedy")
        lost = current["accuracy"] - info["accuracy"]
        return lost / saved if saved > 0 else float("inf")

    heap: list[tuple[float, int, int]] = []
    for knob in knobs:
        if recorder.count >= limit or scorer.wall_cost(w, a) <= scorer.wall_budget:
            break
        value = score(knob)
        if value is not None:
            heapq.heappush(heap, (value, *knob))
    while heap and scorer.wall_cost(w, a) > scorer.wall_budget and recorder.count < limit:
        _, layer, part = heapq.heappop(heap)
        (w, a)[part][layer] -= 1
        again = _lowered(w, a, (layer, part), scorer.min_bits) if recorder.count + 1 < limit else None
        scorer.prefetch([(w, a), *([again] if again is not None else [])], enforce=False)
        current = scorer.score(w, a, enforce=False)
        recorder.record(current, "greedy")
        value = score((layer, part)) if recorder.count < limit else None
        if value is not None:
            heapq.heappush(heap, (value, layer, part))
    if scorer.wall_cost(w, a) > scorer.wall_budget:
        recorder.record(scorer.score(w, a, enforce=True), "greedy")


def _lowered(w: np.ndarray, a: np.ndarray, knob: tuple[int, int], min_bits: int) -> tuple[np.ndarray, np.ndarray] | None:
    """The policy with ``knob`` (layer, 0 = weight / 1 = activation) one bit lower; None at the minimum."""
    layer, part = knob
    if (w, a)[part][layer] <= min_bits:
        return None
    trial_w, trial_a = w.copy(), a.copy()
    (trial_w, trial_a)[part][layer] -= 1
    return trial_w, trial_a
