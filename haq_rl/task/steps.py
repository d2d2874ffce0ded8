"""An episode's steps: which layer's bits each step chooses, and actions in [-1, 1] as bits.

The step schedule and the action mapping belong to the task, not to the Gymnasium
adapter: the env steps through them, and methods that propose actions without an env
(random search) turn them into bits the same way.


The interval [-1, 1] is cut into ``max_bits - min_bits + 1`` bins of equal width; bin
``i`` (from the left) means ``min_bits + i`` bits. The inverse maps bits to the centre
of their bin, which is what the agent stores when the action wall changed its choice.
"""

from __future__ import annotations

import numpy as np


def action_to_bits(action: np.ndarray | float, min_bits: int, max_bits: int) -> np.ndarray:
    """Equal-width bins over [-1, 1]; values outside are clipped first."""
    levels = max_bits - min_bits + 1
    # minimum/maximum and a cast rather than np.clip and np.floor: the same numbers (unit >= 0,
    # where truncation is the floor) in 5.4 us instead of 8.9 us a call, once per env step.
    clipped = np.minimum(np.maximum(np.asarray(action, dtype=np.float64), -1.0), 1.0)
    unit = (clipped + 1.0) / 2.0
    return min_bits + np.minimum((unit * levels).astype(np.int64), levels - 1)


def bits_to_action(bits: np.ndarray | int, min_bits: int, max_bits: int) -> np.ndarray:
    """Centre of the bin of ``bits`` (the inverse of :func:`action_to_bits`)."""
    levels = max_bits - min_bits + 1
    index = np.asarray(bits, dtype=np.float64) - min_bits
    return (-1.0 + (index + 0.5) * 2.0 / levels).astype(np.float32)


#: A step's part: the layer's weight bits, its activation bits, or both (joint mode).
WEIGHT, ACTIVATION, JOINT = 0, 1, 2


def step_schedule(pinned: np.ndarray, weight_only: bool, step_mode: str) -> list[tuple[int, int]]:
    """(layer index, part) of every step: pinned layers take none; ``joint`` one step per
    layer, weight-only objectives weight steps only, else weight then activation per layer."""
    free = [i for i in range(len(pinned)) if not pinned[i]]
    if step_mode == "joint":
        return [(i, JOINT) for i in free]
    if weight_only:
        return [(i, WEIGHT) for i in free]
    return [(i, part) for i in free for part in (WEIGHT, ACTIVATION)]


def set_step_bits(schedule: list[tuple[int, int]], step: int, bits: np.ndarray, w: np.ndarray,
                  a: np.ndarray) -> None:
    """Write the bits step ``step`` chose into ``w`` / ``a`` (in place)."""
    layer, part = schedule[step]
    if part == JOINT:
        w[layer], a[layer] = int(bits[0]), int(bits[1])
    elif part == WEIGHT:
        w[layer] = int(bits[0])
    else:
        a[layer] = int(bits[0])


def bits_of_actions(schedule: list[tuple[int, int]], actions: np.ndarray, layer_count: int, min_bits: int,
                    max_bits: int, reference_bits: int) -> tuple[np.ndarray, np.ndarray]:
    """The (w_bits, a_bits) an episode taking ``actions`` (one row per step) proposes,
    before the wall; layers no step chooses stay at ``reference_bits``."""
    w = np.full(layer_count, reference_bits, dtype=np.int64)
    a = np.full(layer_count, reference_bits, dtype=np.int64)
    rows = np.asarray(actions, dtype=np.float64).reshape(len(schedule), -1)
    for step, action in enumerate(rows):
        set_step_bits(schedule, step, action_to_bits(action, min_bits, max_bits), w, a)
    return w, a
