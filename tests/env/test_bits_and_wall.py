"""Unit and property tests of the action mapping and HAQ's action wall (pure numpy)."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from haq_rl.errors import BudgetError
from haq_rl.task.budget import enforce_budget
from haq_rl.task.steps import action_to_bits, bits_to_action


def test_equal_width_bins_cover_the_range():
    actions = np.linspace(-1, 1, 7001)
    bits = action_to_bits(actions, 2, 8)
    assert bits.min() == 2 and bits.max() == 8
    counts = np.bincount(bits)[2:]
    assert counts.max() - counts.min() <= 2  # 7 bins of equal width
    assert action_to_bits(-1.0, 2, 8) == 2 and action_to_bits(1.0, 2, 8) == 8
    assert action_to_bits(5.0, 2, 8) == 8 and action_to_bits(-5.0, 2, 8) == 2


@pytest.mark.parametrize("low,high", [(2, 8), (1, 8), (4, 4), (3, 6)])
def test_bits_to_action_inverts_action_to_bits(low, high):
    bits = np.arange(low, high + 1)
    assert np.array_equal(action_to_bits(bits_to_action(bits, low, high), low, high), bits)
    assert np.all(np.abs(bits_to_action(bits, low, high)) <= 1)


def _table_cost(table):
    index = np.arange(table.shape[0])
    return lambda w, a: float(table[index, w - 1, a - 1].sum())


@settings(max_examples=300, deadline=None)
@given(
    layers=st.integers(2, 12),
    seed=st.integers(0, 2**31 - 1),
    ratio=st.floats(0.05, 1.0),
)
def test_wall_meets_budget_minimally_and_respects_frozen_layers(layers, seed, ratio):
    rng = np.random.default_rng(seed)
    w_grid, a_grid = np.meshgrid(np.arange(1, 9), np.arange(1, 9), indexing="ij")
    # Monotone costs: per-layer mix of compute (w*a), weight and activation terms.
    scale = rng.uniform(0.1, 10.0, size=(layers, 3))
    table = (scale[:, 0, None, None] * w_grid * a_grid + scale[:, 1, None, None] * w_grid
             + scale[:, 2, None, None] * a_grid)
    cost = _table_cost(table)
    frozen = np.zeros(layers, bool)
    frozen[0] = True
    w = rng.integers(2, 9, layers)
    a = rng.integers(2, 9, layers)
    w[0] = a[0] = 8
    minimum = cost(np.where(frozen, 8, 2), np.where(frozen, 8, 2))
    budget = ratio * cost(np.full(layers, 8), np.full(layers, 8))
    if minimum > budget:
        with pytest.raises(BudgetError):
            enforce_budget(w, a, cost, budget, 2, frozen)
        return
    new_w, new_a, lowered = enforce_budget(w, a, cost, budget, 2, frozen)
    assert cost(new_w, new_a) <= budget
    assert new_w[0] == 8 and new_a[0] == 8
    assert np.all(new_w <= w) and np.all(new_a <= a) and np.all(new_w >= 2) and np.all(new_a >= 2)
    assert lowered == int((w - new_w).sum() + (a - new_a).sum())
    if lowered:
        # Minimal: undoing any single bit the wall removed last breaks the budget. The
        # last change is the earliest layer it touched in its last sweep.
        candidates = [(arr, i) for arr, old in ((new_w, w), (new_a, a)) for i in range(layers) if arr[i] < old[i]]
        assert any(cost(*_undo(new_w, new_a, arr is new_w, i)) > budget for arr, i in candidates)


def _undo(w, a, is_weight, i):
    w, a = w.copy(), a.copy()
    (w if is_weight else a)[i] += 1
    return w, a


def test_wall_order_is_last_layer_first_activation_before_weight():
    table = np.ones((3, 8, 8)) * np.arange(1, 9)[None, :, None] + np.arange(1, 9)[None, None, :]
    cost = _table_cost(table)
    w = np.array([8, 8, 8])
    a = np.array([8, 8, 8])
    full = cost(w, a)
    new_w, new_a, lowered = enforce_budget(w, a, cost, full - 1, 2, [False] * 3)
    assert lowered == 1 and new_a.tolist() == [8, 8, 7] and new_w.tolist() == [8, 8, 8]
    new_w, new_a, lowered = enforce_budget(w, a, cost, full - 2, 2, [False] * 3)
    assert lowered == 2 and new_a.tolist() == [8, 8, 7] and new_w.tolist() == [8, 8, 7]


def test_weight_only_wall_leaves_activations():
    table = np.ones((2, 8, 8)) * np.arange(1, 9)[None, :, None]
    cost = _table_cost(table)
    new_w, new_a, _ = enforce_budget(np.array([8, 8]), np.array([8, 8]), cost, 8, 2, [False, False],
                                     lower_activations=False)
    assert new_a.tolist() == [8, 8] and cost(new_w, new_a) <= 8
