"""The HAQ quantization environment."""

from __future__ import annotations

import logging
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from haq_rl.env.embedding import (
    ACTIVATION_FLAG,
    FEATURE_NAMES,
    PREVIOUS_ACTION,
    static_layer_features,
)
from haq_rl.env.rendering import policy_image, policy_text
from haq_rl.errors import ConfigError, UnknownNameError, check_budget
from haq_rl.hardware import LayerSpec
from haq_rl.task.budget import REFERENCE_BITS
from haq_rl.task.conditioned import BudgetScorers, scheduled_budget
from haq_rl.task.scoring import PolicyScorer
from haq_rl.task.spec import STEP_MODES
from haq_rl.task.steps import (
    JOINT,
    action_to_bits,
    bits_of_actions,
    bits_to_action,
    set_step_bits,
    step_schedule,
)

logger = logging.getLogger(__name__)


class QuantizationEnv(gym.Env):
    """Choose weight and activation bits for every layer of a model under a hardware budget.

    An episode walks through the quantizable layers (Conv2d and Linear) of a model in
    module order. At the end the policy is forced under the budget by HAQ's action
    wall, the quantized model is evaluated on the reward split, and the episode's only
    non-zero reward is paid.

    ## Action Space

    ``Box(-1, 1, shape=(1,), float32)`` in the default ``alternate`` step mode: one step
    chooses the weight bits of a layer, the next its activation bits (weight-only
    objectives such as ``size`` have weight steps only). In ``joint`` mode the action is
    ``Box(-1, 1, shape=(2,))`` = (weight, activation) for one layer per step. The
    interval [-1, 1] is cut into ``max_bits - min_bits + 1`` equal-width bins, bin ``i``
    meaning ``min_bits + i`` bits (:func:`haq_rl.task.steps.action_to_bits`).

    ## Observation Space

    ``Box(0, 1, shape=(12,), float32)``: HAQ's layer embedding, each feature min-max
    scaled over the model's layers: layer index, is-conv, is-depthwise, is-linear, input
    channels, output channels, stride, kernel size, log weight count, log input feature
    map size, previous action (bits chosen at the previous step, scaled to [0, 1]; 0 at
    the first step of every episode) and the weight(0)/activation(1) step flag.

    ## Rewards

    0 on every step but the last. At the last step, with ``reward_metric="accuracy"``
    (HAQ), ``0.1 * (acc - acc_ref)`` with accuracies in percent, ``acc`` the quantized
    model's eval-mode accuracy on the reward split and ``acc_ref`` the float model's; with
    ``reward_metric="kl"``, ``-KL(p_float || p_quant)``, the mean KL divergence (nats) of the
    quantized model's predictions from the float model's on the same images. Either is
    measured after the optional per-policy BatchNorm re-estimation (``bn_recalibration``)
    or short fine-tune (``finetune_steps``). ``info`` carries both ``accuracy`` and ``kl``,
    measured on what the ``reward_source`` scores: ``post_training``, the float weights
    quantized per policy; ``supernet``, the bit-width supernet at the policy's widths;
    ``predictor``, the regressor's predictions of the supernet's values (its accuracy kept
    within the accuracies of the supernet evaluations it was fitted on). ``float_accuracy``
    is always the task's float model on the same images.

    ## Episode End

    The episode terminates after the last layer's step (``2 * N`` steps for ``N`` free
    layers, ``N`` in joint mode or for weight-only objectives); it is never truncated.
    Then the action wall lowers bits from the last layer to the first (activation, then
    weight, one bit at a time) until the policy's cost is within budget. Layers pinned
    to 8 bits (first and last, when ``pin_first_last``) take no step and are never
    lowered. The last step's ``info`` holds ``policy`` (layer -> (w_bits, a_bits)),
    ``w_bits``, ``a_bits``, ``proposed_w_bits``, ``proposed_a_bits``, ``bits_lowered``,
    ``applied_actions`` (the actions matching the applied bits, one row per step),
    ``accuracy``, ``float_accuracy``, ``cost``, ``cost_ratio``, ``budget_ratio``,
    ``latency_ms``, ``energy_uj``, ``size_bytes`` and ``bops``.

    ## Arguments

    * ``scorer``: a :class:`~haq_rl.task.scoring.PolicyScorer`: the task's evaluator, cost
      table, objective, budget (a ratio of the uniform 8/8 cost, HAQ's preserve ratio),
      bit range, pinned layers and reward metric. Every baseline scores with the same one.
    * ``layers``: the quantizable layers' :class:`LayerSpec` (the embedding's features).
    * ``step_mode``: ``alternate`` (HAQ) or ``joint``.
    * ``budget_feature``: append a 13th observation feature, the cost of the bits chosen so
      far (undecided layers at the minimum) over the budget, halved and clipped to [0, 1]
      (0.5 = at budget). Not in HAQ; off by default.
    * ``budgets``: a budget-conditioned env (not in HAQ). Every episode runs under one of
      these budgets (ratios of 8/8, ascending): the projected-cost feature above is always
      on, and one more feature, the episode's budget itself, is appended (14 features).
      ``reset(options={"budget": b})`` picks the budget (any feasible one, listed or not);
      a plain ``reset()`` takes the next entry of a seeded schedule
      (:func:`haq_rl.task.conditioned.scheduled_budget`: every block of ``len(budgets)``
      episodes is a permutation of the list, drawn from ``(schedule_seed, block)``), so the
      budget of episode ``episode_index`` is the same in a resumed run.

    Most users create it from a registered spec: ``gymnasium.make("haq_rl/FashionMobileNetV2Edge-v0",
    budget=0.3)``; any field of :class:`~haq_rl.task.spec.TaskSpec` can be overridden.
    ``make_env(task_or_spec)`` builds one from a :class:`~haq_rl.task.Task` too.

    ## Version History

    Per id: ``haq-rl envs ID`` prints these sections for one registered id, with the
    versions of its name (:mod:`haq_rl.env.card`). An id never changes meaning; a replaced
    one stays registered and warns (:mod:`haq_rl.env.registration`, docs/environments.md).

    ## Rendering

    ``render_mode="ansi"``: one line per layer; ``"rgb_array"``: a ``uint8`` image, a weight
    and an activation bar per layer (:mod:`haq_rl.env.rendering`). Undecided layers show 8
    bits; after the last step, the bits the wall applied.
    """

    #: ``ansi``: one line per layer; ``rgb_array``: bars of the bits (haq_rl.env.rendering), the
    #: mode stable-baselines3's ``make_vec_env`` asks for. One frame per step at ``render_fps``.
    metadata = {"render_modes": ["ansi", "rgb_array"], "render_fps": 10}

    def __init__(
        self,
        scorer: PolicyScorer,
        layers: list[LayerSpec],
        *,
        budget_feature: bool = False,
        step_mode: str = "alternate",
        render_mode: str | None = None,
        env_spec: Any = None,
        budgets: tuple[float, ...] = (),
        schedule_seed: int = 0,
    ) -> None:
        if step_mode not in STEP_MODES:
            raise UnknownNameError("step_mode", step_mode, STEP_MODES)
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise UnknownNameError("render_mode", render_mode, self.metadata["render_modes"])
        names = [layer.name for layer in layers]
        if names != scorer.layer_names:
            raise ConfigError("layer specs and the scorer's cost table describe different layers")

        self.scorer = scorer
        self.layers = list(layers)
        self.layer_names = names
        self.min_bits = scorer.min_bits
        self.max_bits = scorer.max_bits
        self.weight_only = scorer.weight_only
        self.pinned = scorer.pinned
        #: The task's scorer per budget and the budget schedule (haq_rl.task.conditioned).
        self.scorers = BudgetScorers(scorer, budgets)
        self.budgets = tuple(float(b) for b in budgets)
        self.conditioned = bool(self.budgets)
        self.budget_feature = budget_feature or self.conditioned
        #: The next plain reset() takes the schedule's budget of this episode index.
        self.episode_index = 0
        self.schedule_seed = int(schedule_seed)
        self.episode_budget = scorer.budget_ratio
        self.step_mode = step_mode
        self.render_mode = render_mode
        self.env_spec = env_spec
        layers_count = len(layers)

        # Step schedule: (layer index, 0 = weight / 1 = activation / 2 = joint).
        self._schedule = step_schedule(self.pinned, self.weight_only, step_mode)
        # Row k: the layers the first k steps decided, or pinned (the budget feature's mask).
        self._kept_before = np.zeros((len(self._schedule) + 1, len(self.layer_names)), dtype=bool)
        self._kept_before[:] = self.pinned
        for step, (layer, _) in enumerate(self._schedule):
            self._kept_before[step + 1:, layer] = True
        if not self._schedule:
            raise ConfigError("the model has no free layer to quantize (all layers are pinned)")
        self.action_dim = 2 if step_mode == "joint" else 1
        self.action_space = spaces.Box(-1.0, 1.0, shape=(self.action_dim,), dtype=np.float32)
        features = len(FEATURE_NAMES) + (1 if self.budget_feature else 0) + (1 if self.conditioned else 0)
        self.observation_space = spaces.Box(0.0, 1.0, shape=(features,), dtype=np.float32)
        self._features = static_layer_features(self.layers)
        self._step_index = 0
        self._w = np.full(layers_count, REFERENCE_BITS, dtype=np.int64)
        self._a = np.full(layers_count, REFERENCE_BITS, dtype=np.int64)
        self._previous_action = 0.0
        self.last_info: dict[str, Any] = {}
        self.task: Any = None  # the Task it was built from (make_env), else None

    # ------------------------------------------------------------------ costs
    @property
    def steps_per_episode(self) -> int:
        return len(self._schedule)

    # ------------------------------------------------------------------ gym API
    def scorer_at(self, budget: float) -> PolicyScorer:
        """The scorer under ``budget`` (cached; the evaluator and its memo are shared)."""
        return self.scorers.at(budget)

    @property
    def episode_scorer(self) -> PolicyScorer:
        """The scorer of the current episode's budget."""
        return self.scorer_at(self.episode_budget) if self.conditioned else self.scorer

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        if self.conditioned:
            if options and "budget" in options:
                self.episode_budget = check_budget("reset option budget", options["budget"])
                self.scorer_at(self.episode_budget)  # fails now on an infeasible budget
            else:
                self.episode_budget = scheduled_budget(self.budgets, self.schedule_seed, self.episode_index)
                self.episode_index += 1
        self._step_index = 0
        self._w[:] = REFERENCE_BITS
        self._a[:] = REFERENCE_BITS
        self._previous_action = 0.0  # HAQ leaked the previous episode's last action here
        return self._observation(), {}

    def step(self, action):
        if self._step_index >= len(self._schedule):
            raise RuntimeError("step() called after the episode ended; call reset() first")
        action = np.asarray(action, dtype=np.float64).reshape(-1)
        if action.shape != (self.action_dim,) or not np.isfinite(action).all():
            raise ConfigError(f"action {action.tolist()} must be {self.action_dim} finite value(s) in [-1, 1]")
        self._take_action(action)
        if self._step_index < len(self._schedule):
            return self._observation(), 0.0, False, False, {}
        info = self._finish_episode()
        self.last_info = info
        return self._observation(), float(info["reward"]), True, False, info

    def _take_action(self, action: np.ndarray) -> None:
        """Set the bits the current step's action chooses and move to the next step."""
        bits = action_to_bits(action, self.min_bits, self.max_bits)
        set_step_bits(self._schedule, self._step_index, bits, self._w, self._a)
        self._previous_action = float((bits[-1] - self.min_bits) / max(self.max_bits - self.min_bits, 1))
        self._step_index += 1

    def observations_for(self, actions: np.ndarray, budget: float | None = None) -> np.ndarray:
        """The observations an episode taking ``actions`` sees (one row per step), without evaluating.

        ``budget`` (conditioned envs): the episode's budget, default the current one. The
        env's own episode state is left as it was.
        """
        saved = (self._step_index, self._w.copy(), self._a.copy(), self._previous_action, self.episode_budget)
        if budget is not None:
            self.episode_budget = float(budget)
        try:
            self._step_index = 0
            self._w[:] = REFERENCE_BITS
            self._a[:] = REFERENCE_BITS
            self._previous_action = 0.0
            rows = []
            for action in np.asarray(actions, dtype=np.float64).reshape(len(self._schedule), self.action_dim):
                rows.append(self._observation())
                self._take_action(action)
            return np.stack(rows)
        finally:
            self._step_index, self._w[:], self._a[:], self._previous_action, self.episode_budget = (
                saved[0], saved[1], saved[2], saved[3], saved[4])

    def bits_for(self, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The bits an episode taking ``actions`` proposes (before the wall), without evaluating.

        The env's own episode state is left as it was. Batched searches use it to evaluate
        several episodes' policies together (``PolicyScorer.prefetch``) before stepping them.
        """
        return bits_of_actions(self._schedule, actions, len(self.layer_names), self.min_bits, self.max_bits,
                               REFERENCE_BITS)

    def render(self) -> str | np.ndarray | None:
        """The bits so far (undecided layers at 8), after the last step those the wall applied."""
        if self.render_mode == "ansi":
            return policy_text(self.layer_names, self._w, self._a)
        if self.render_mode == "rgb_array":
            done = self._step_index >= len(self._schedule)
            return policy_image(self._w, self._a, self.pinned, self.max_bits,
                                None if done else self._schedule[self._step_index][0])
        return None

    # ------------------------------------------------------------------ internals
    def _observation(self) -> np.ndarray:
        index = min(self._step_index, len(self._schedule) - 1)
        layer, part = self._schedule[index]
        observation = self._features[layer].copy()
        observation[PREVIOUS_ACTION] = self._previous_action if self._step_index > 0 else 0.0
        observation[ACTIVATION_FLAG] = 1.0 if part == 1 else 0.0
        if self.budget_feature:
            observation = np.append(observation, np.float32(self._projected_cost_feature()))
        if self.conditioned:
            observation = np.append(observation, np.float32(self.episode_budget))
        return observation

    def _projected_cost_feature(self) -> float:
        """Cost of the bits chosen so far, undecided layers at the minimum, over the budget.

        Scaled so 0.5 means "exactly at budget": above it the wall will cut bits.
        """
        keep = self._kept_before[self._step_index]
        w = np.where(keep, self._w, self.min_bits)
        a = np.where(keep | self.weight_only, self._a, self.min_bits)
        scorer = self.episode_scorer
        return float(np.clip(scorer.wall_cost(w, a) / scorer.wall_budget, 0.0, 2.0) / 2.0)

    def _finish_episode(self) -> dict[str, Any]:
        return self.score_policy(self._w.copy(), self._a.copy())

    def score_policy(self, w_bits: np.ndarray, a_bits: np.ndarray, enforce: bool = True) -> dict[str, Any]:
        """The scorer's result for a policy, plus ``applied_actions``, as the last step's info.

        The env's episode state takes the applied bits (what :meth:`render` shows). A
        conditioned env walls at the episode's budget (``info["budget_ratio"]``).
        """
        info = self.episode_scorer.score(w_bits, a_bits, enforce=enforce)
        self._w[:], self._a[:] = info["w_bits"], info["a_bits"]
        info["applied_actions"] = self.policy_actions(info["w_bits"], info["a_bits"])
        return info

    def policy_actions(self, w: np.ndarray, a: np.ndarray) -> np.ndarray:
        """The actions (one row per step, bin centres) whose episode proposes these bits."""
        rows = []
        for layer, part in self._schedule:
            if part == JOINT:
                rows.append([w[layer], a[layer]])
            else:
                rows.append([w[layer] if part == 0 else a[layer]])
        return bits_to_action(np.asarray(rows), self.min_bits, self.max_bits).astype(np.float32)
