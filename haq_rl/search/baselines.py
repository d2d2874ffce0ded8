"""Baselines that need no learning: random, uniform and greedy, scored through the env."""

from __future__ import annotations

import heapq
from typing import Any

import numpy as np

from haq_rl.search.harness import Recorder, SearchConfig
from haq_rl.task.budget import uniform_bits


def search_random(env: Any, config: SearchConfig, recorder: Recorder) -> None:
    """Uniform random actions, wall-enforced, for the same number of episodes."""
    while recorder.count < config.episodes:
        rng = np.random.default_rng([config.seed, recorder.count])
        env.reset(seed=config.seed + recorder.count)
        terminated = False
        info: dict[str, Any] = {}
        while not terminated:
            action = rng.uniform(-1, 1, size=env.action_space.shape).astype(np.float32)
            _, _, terminated, _, info = env.step(action)
        recorder.record(info, "random")


def _free_bits(env: Any, bits: int) -> tuple[np.ndarray, np.ndarray]:
    return uniform_bits(env.pinned, env.weight_only, bits)


def search_uniform(env: Any, config: SearchConfig, recorder: Recorder) -> None:
    """The largest uniform bits within budget first, then the other uniform widths.

    The choice needs only the cost table; the other widths (while ``episodes`` lasts)
    are evaluated as reference points for reports.
    """
    widths = list(range(env.max_bits, env.min_bits - 1, -1))
    feasible = [b for b in widths if env.cost(*_free_bits(env, b)) <= env.budget]
    chosen = feasible[0] if feasible else env.min_bits
    for bits in [chosen, *(b for b in widths if b != chosen)]:
        if recorder.count >= config.episodes:
            break
        recorder.record(env.evaluate_policy(*_free_bits(env, bits), enforce=not feasible), "uniform")


def search_greedy(env: Any, config: SearchConfig, recorder: Recorder) -> None:
    """Start at 8/8; repeatedly lower the bit with the least accuracy lost per cost saved.

    Lazy greedy: every knob (a layer's weight or activation bits) is scored once, then
    only the chosen knob is re-scored after each change, so the search costs about one
    evaluation per lowered bit. Stops within budget, or when the evaluation budget
    (``episodes``) runs out, in which case the action wall finishes the job.
    """
    w, a = _free_bits(env, env.max_bits)
    free = [i for i in range(len(w)) if not env.pinned[i]]
    knobs = [(i, 0) for i in free] + ([] if env.weight_only else [(i, 1) for i in free])
    current = env.evaluate_policy(w, a, enforce=False)
    recorder.record(current, "greedy")

    def score(knob: tuple[int, int]) -> float | None:
        layer, part = knob
        bits = (w, a)[part]
        if bits[layer] <= env.min_bits:
            return None
        trial_w, trial_a = w.copy(), a.copy()
        (trial_w, trial_a)[part][layer] -= 1
        saved = env.cost(w, a) - env.cost(trial_w, trial_a)
        info = env.evaluate_policy(trial_w, trial_a, enforce=False)
        recorder.record(info, "greedy")
        lost = current["accuracy"] - info["accuracy"]
        return lost / saved if saved > 0 else float("inf")

    limit = config.episodes - 1  # keep one evaluation for the action wall at the end
    heap: list[tuple[float, int, int]] = []
    for knob in knobs:
        if recorder.count >= limit or env.cost(w, a) <= env.budget:
            break
        value = score(knob)
        if value is not None:
            heapq.heappush(heap, (value, *knob))
    while heap and env.cost(w, a) > env.budget and recorder.count < limit:
        _, layer, part = heapq.heappop(heap)
        (w, a)[part][layer] -= 1
        current = env.evaluate_policy(w, a, enforce=False)
        recorder.record(current, "greedy")
        value = score((layer, part)) if recorder.count < limit else None
        if value is not None:
            heapq.heappush(heap, (value, layer, part))
    if env.cost(w, a) > env.budget:
        recorder.record(env.evaluate_policy(w, a, enforce=True), "greedy")


