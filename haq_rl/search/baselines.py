"""Baselines that need no learning: random (through the env), uniform and greedy (through the scorer)."""

from __future__ import annotations

import heapq
from typing import Any

import numpy as np

from haq_rl.env.budgets import scheduled_budget
from haq_rl.search.harness import Recorder, SearchConfig, SearchSetup


def search_random(setup: SearchSetup, config: SearchConfig, recorder: Recorder) -> None:
    """Uniform random actions, wall-enforced, for the same number of episodes.

    Conditioned runs wall each episode at the budget the env's schedule gives it.
    """
    env = setup.env
    while recorder.count < config.episodes:
        rng = np.random.default_rng([config.seed, recorder.count])
        options = ({"budget": scheduled_budget(env.budgets, config.seed, recorder.count)}
                   if env.conditioned else None)
        env.reset(seed=config.seed + recorder.count, options=options)
        terminated = False
        info: dict[str, Any] = {}
        while not terminated:
            action = rng.uniform(-1, 1, size=env.action_space.shape).astype(np.float32)
            _, _, terminated, _, info = env.step(action)
        recorder.record(info, "random")


def search_uniform(setup: SearchSetup, config: SearchConfig, recorder: Recorder) -> None:
    """The largest uniform bits within budget first, then the other uniform widths.

    The choice needs only the cost table; the other widths (while ``episodes`` lasts)
    are evaluated as reference points for reports. Conditioned runs evaluate every width
    as it is (each counts for the budgets it meets), then the walled minimum width at
    each budget no width meets.
    """
    scorer = setup.scorer
    if setup.env.conditioned:
        for bits in range(scorer.max_bits, scorer.min_bits - 1, -1):
            if recorder.count < config.episodes:
                recorder.record(scorer.score(*scorer.uniform(bits), enforce=False), "uniform")
        for budget in setup.env.budgets:
            if budget not in recorder.best_by_budget and recorder.count < config.episodes:
                recorder.record(setup.env.scorer_at(budget).score(*scorer.uniform(scorer.min_bits)), "uniform")
        return
    widths = list(range(scorer.max_bits, scorer.min_bits - 1, -1))
    largest = scorer.largest_uniform()
    feasible = largest is not None
    chosen = largest if largest is not None else scorer.min_bits
    for bits in [chosen, *(b for b in widths if b != chosen)]:
        if recorder.count >= config.episodes:
            break
        recorder.record(scorer.score(*scorer.uniform(bits), enforce=not feasible), "uniform")


def search_greedy(setup: SearchSetup, config: SearchConfig, recorder: Recorder) -> None:
    """Start at 8/8; repeatedly lower the bit with the least accuracy lost per cost saved.

    Lazy greedy: every knob (a layer's weight or activation bits) is scored once, then
    only the chosen knob is re-scored after each change, so the search costs about one
    evaluation per lowered bit. Stops within budget, or when the evaluation budget
    (``episodes``) runs out, in which case the action wall finishes the job.
    """
    scorer = setup.scorer
    w, a = scorer.uniform(scorer.max_bits)
    free = [i for i in range(len(w)) if not scorer.pinned[i]]
    knobs = [(i, 0) for i in free] + ([] if scorer.weight_only else [(i, 1) for i in free])
    current = scorer.score(w, a, enforce=False)
    recorder.record(current, "greedy")

    def score(knob: tuple[int, int]) -> float | None:
        layer, part = knob
        bits = (w, a)[part]
        if bits[layer] <= scorer.min_bits:
            return None
        trial_w, trial_a = w.copy(), a.copy()
        (trial_w, trial_a)[part][layer] -= 1
        saved = scorer.wall_cost(w, a) - scorer.wall_cost(trial_w, trial_a)
        info = scorer.score(trial_w, trial_a, enforce=False)
        recorder.record(info, "greedy")
        lost = current["accuracy"] - info["accuracy"]
        return lost / saved if saved > 0 else float("inf")

    limit = config.episodes - 1  # keep one evaluation for the action wall at the end
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
        current = scorer.score(w, a, enforce=False)
        recorder.record(current, "greedy")
        value = score((layer, part)) if recorder.count < limit else None
        if value is not None:
            heapq.heappush(heap, (value, layer, part))
    if scorer.wall_cost(w, a) > scorer.wall_budget:
        recorder.record(scorer.score(w, a, enforce=True), "greedy")


