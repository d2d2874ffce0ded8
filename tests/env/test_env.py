"""Contract, budget and determinism tests of QuantizationEnv on the registered suite."""

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium.utils.env_checker import check_env as gym_check_env
from stable_baselines3.common.env_checker import check_env as sb3_check_env
from stable_baselines3.common.vec_env import DummyVecEnv, SubprocVecEnv

import haq_rl.env
from haq_rl.env import action_to_bits
from haq_rl.env.embedding import FEATURE_NAMES
from haq_rl.errors import BudgetError, ConfigError, UnknownNameError
from haq_rl.task.spec import shipped_specs

from .conftest import LENET_ID

REGISTERED = sorted(shipped_specs())


def _run_episode(env, actions):
    observations = [env.reset(seed=0)[0]]
    info = {}
    for action in actions:
        observation, reward, terminated, truncated, info = env.step(action)
        observations.append(observation)
        assert not truncated
    assert terminated
    return observations, reward, info


def test_at_least_the_five_required_envs_are_registered():
    assert len(REGISTERED) >= 5
    assert haq_rl.env.DEFAULT_ENV_ID in REGISTERED
    for env_id in REGISTERED:
        assert env_id in gym.registry


#: Envs that differ from a checked one only in hardware or reward (same model, data and
#: spaces); their ~20 s MobileNetV2 checks run with ``make test-slow``. MobileNetV2Edge-v2
#: first trains its supernet (minutes); the supernet reward's contract is checked on LeNet-5
#: in tests/supernet. MobileNetV2OrtCpu-v0 steps weights only, as LeNet5Size-v1 does; the
#: default run builds it in tests/hardware/test_measured.py.
# On Fashion-MNIST the default (FashionMobileNetV2Edge-v0) and ResNet-8 are checked in the
# default run; the others share their model and data (the supernet twin first trains its
# supernet, the CPU one times its layers).
SLOW_CHECKS = {"haq_rl/MobileNetV2Edge-v0", "haq_rl/MobileNetV2EdgeAccuracy-v0", "haq_rl/MobileNetV2Cloud-v0", "haq_rl/MobileNetV2Edge-v2",
               "haq_rl/MobileNetV2EdgeSupernet-v0", "haq_rl/MobileNetV2BitFusionEnergy-v0",
               "haq_rl/MobileNetV2OrtCpu-v0", "haq_rl/FashionMobileNetV2EdgeSupernet-v0",
               "haq_rl/FashionMobileNetV2BitFusionEnergy-v0", "haq_rl/FashionMobileNetV2OrtCpu-v0"}


@pytest.mark.parametrize("env_id", [pytest.param(env_id, marks=pytest.mark.slow) if env_id in SLOW_CHECKS
                                    else env_id for env_id in REGISTERED])
def test_gymnasium_and_sb3_checkers_pass(env_id):
    # The checkers step many episodes: on Fashion-MNIST a smaller reward subset keeps it quick
    # (the env and its spaces are the same; only the reward's sample of images is smaller).
    env = gym.make(env_id, reward_images=200) if "Fashion" in env_id else gym.make(env_id)
    try:
        gym_check_env(env.unwrapped, skip_render_check=True)
        sb3_check_env(env.unwrapped, warn=True)
        episode_steps = env.unwrapped.steps_per_episode
        rng = np.random.default_rng(0)
        _, reward, info = _run_episode(env, rng.uniform(-1, 1, (episode_steps, *env.action_space.shape)))
        assert info["cost_ratio"] <= info["budget_ratio"] + 1e-9
        if env.unwrapped.scorer.reward_metric == "kl":
            assert reward == pytest.approx(-info["kl"]) and info["kl"] > 0
        else:
            assert reward == pytest.approx(0.1 * (info["accuracy"] - info["float_accuracy"]))
        assert set(info) >= {"policy", "accuracy", "kl", "cost", "cost_ratio", "latency_ms", "energy_uj", "size_bytes"}
    finally:
        env.close()


def test_observation_layout_and_first_observation_is_not_leaked(default_env):
    env = default_env.unwrapped
    first, _ = env.reset(seed=1)
    assert first.shape == (len(FEATURE_NAMES),) and first.dtype == np.float32
    assert env.observation_space.contains(first)
    _run_episode(env, np.ones((env.steps_per_episode, 1)))
    again, _ = env.reset(seed=2)
    assert np.array_equal(first, again)  # HAQ leaked the last action here
    assert again[FEATURE_NAMES.index("previous_action")] == 0.0


def test_alternate_steps_are_weight_then_activation(default_env):
    env = default_env.unwrapped
    free = int((~env.pinned).sum())
    assert env.steps_per_episode == 2 * free
    observation, _ = env.reset(seed=0)
    flag = FEATURE_NAMES.index("is_activation_step")
    flags = [observation[flag]]
    for _ in range(5):
        observation, *_ = env.step(np.array([0.0], np.float32))
        flags.append(observation[flag])
    assert flags == [0, 1, 0, 1, 0, 1]


def test_pinned_layers_stay_at_8_bits_even_without_wall(default_env):
    env = default_env.unwrapped
    _, _, info = _run_episode(env, -np.ones((env.steps_per_episode, 1)))
    assert info["bits_lowered"] == 0  # all-minimum policy is within budget already
    names = env.layer_names
    assert info["policy"][names[0]] == (8, 8) and info["policy"][names[-1]] == (8, 8)


def test_wall_property_over_1000_random_action_sequences_default_env(default_env):
    """Final cost <= budget, the wall is minimal, pinned layers at 8 bits (real cost table)."""
    env = default_env.unwrapped
    rng = np.random.default_rng(0)
    free = np.flatnonzero(~env.pinned)
    for _ in range(1000):
        actions = rng.uniform(-1, 1, (2, len(env.layer_names)))
        w = action_to_bits(actions[0], env.min_bits, env.max_bits)
        a = action_to_bits(actions[1], env.min_bits, env.max_bits)
        new_w, new_a, lowered = env.scorer.apply_wall(w, a)
        assert env.scorer.cost(new_w, new_a) <= env.scorer.budget_cost
        assert np.all(new_w[env.pinned] == 8) and np.all(new_a[env.pinned] == 8)
        assert np.all(new_w[free] >= env.min_bits) and np.all(new_a[free] >= env.min_bits)
        if lowered:
            # Undo the wall's last single-bit change: the budget must break.
            before = _state_before_last_change(env, w, a, new_w, new_a)
            assert env.scorer.cost(*before) > env.scorer.budget_cost


def _state_before_last_change(env, w, a, new_w, new_a):
    """Replay the wall's order (last layer first, activation then weight) to its last step."""
    w = np.where(env.pinned, 8, w).astype(np.int64)
    a = np.where(env.pinned, 8, a).astype(np.int64)
    previous = (w.copy(), a.copy())
    order = [i for i in reversed(range(len(w))) if not env.pinned[i]]
    while not (np.array_equal(w, new_w) and np.array_equal(a, new_a)):
        for i in order:
            for bits in (a, w):
                if bits[i] > env.min_bits and not (np.array_equal(w, new_w) and np.array_equal(a, new_a)):
                    previous = (w.copy(), a.copy())
                    bits[i] -= 1
    return previous


def test_wall_property_over_1000_full_episodes_lenet(lenet_env):
    """Full episodes through step() with the real evaluator (LeNet-5 keeps this fast)."""
    env = lenet_env.unwrapped
    rng = np.random.default_rng(1)
    for _ in range(1000):
        env.reset()
        info = {}
        for _ in range(env.steps_per_episode):
            *_, info = env.step(rng.uniform(-1, 1, (1,)).astype(np.float32))
        assert info["cost"] <= env.scorer.budget_cost + 1e-9
        assert np.all(info["a_bits"] == 8)  # size objective: weight-only steps
        assert np.all(info["w_bits"] <= info["proposed_w_bits"])
    assert env.scorer.evaluator.cache_hits > 0  # repeated policies were memoised


def test_same_seed_same_observations_policies_rewards():
    results = []
    for _ in range(2):
        env = gym.make(LENET_ID)
        rng = np.random.default_rng(42)
        env.reset(seed=42)
        episode = []
        for _ in range(3):
            observations, reward, info = _run_episode(
                env, rng.uniform(-1, 1, (env.unwrapped.steps_per_episode, 1)))
            episode.append((np.stack(observations), reward, info["policy"]))
        results.append(episode)
        env.close()
    for (obs_a, rew_a, pol_a), (obs_b, rew_b, pol_b) in zip(*results, strict=True):
        assert np.array_equal(obs_a, obs_b) and rew_a == rew_b and pol_a == pol_b


def test_applied_actions_map_back_to_final_bits(default_env):
    env = default_env.unwrapped
    _, _, info = _run_episode(env, np.ones((env.steps_per_episode, 1)))
    assert info["bits_lowered"] > 0
    applied = action_to_bits(info["applied_actions"][:, 0], env.min_bits, env.max_bits)
    free = np.flatnonzero(~env.pinned)
    expected = np.stack([info["w_bits"][free], info["a_bits"][free]], axis=1).reshape(-1)
    assert np.array_equal(applied, expected)


def test_joint_mode_has_2d_actions():
    env = gym.make(LENET_ID, step_mode="joint", objective="bops", budget=0.3)
    assert env.action_space.shape == (2,)
    _, _, info = _run_episode(env, np.zeros((env.unwrapped.steps_per_episode, 2)))
    assert info["cost_ratio"] <= 0.3 + 1e-9
    env.close()


def test_make_overrides_and_bad_overrides():
    env = gym.make(LENET_ID, budget=0.5)
    assert env.unwrapped.scorer.budget_ratio == 0.5
    env.close()
    with pytest.raises(UnknownNameError, match="did you mean 'budget'"):
        gym.make(LENET_ID, budgett=0.5)
    with pytest.raises(ConfigError, match="budget=1.5"):
        gym.make(LENET_ID, budget=1.5)


def test_infeasible_budget_is_rejected_with_the_minimum_ratio():
    with pytest.raises(BudgetError, match=r"minimum achievable ratio .* is 0\.\d+"):
        gym.make(LENET_ID, budget=0.05)


def test_vector_envs():
    sync = gym.vector.SyncVectorEnv([lambda: gym.make(LENET_ID)] * 2)
    observations, _ = sync.reset(seed=0)
    assert observations.shape == (2, len(FEATURE_NAMES))
    for _ in range(sync.envs[0].unwrapped.steps_per_episode):
        observations, rewards, terminated, truncated, infos = sync.step(sync.action_space.sample())
    assert terminated.all()
    sync.close()
    for vec_cls in (DummyVecEnv, SubprocVecEnv):
        # "module:id" makes a spawned worker import haq_rl.env (which registers the ids) first.
        vec = vec_cls([lambda: gym.make(f"haq_rl.env:{LENET_ID}")] * 2)
        vec.seed(0)
        vec.reset()
        steps = vec.get_attr("steps_per_episode")[0]
        for _ in range(steps):
            _, rewards, dones, infos = vec.step(np.zeros((2, 1), np.float32))
        assert dones.all() and all("accuracy" in info for info in infos)
        vec.close()


def test_env_uses_the_default_pretrained_checkpoint(default_env):
    """The default env and `haq-rl pretrain` of its model and dataset share one float model."""
    import torch

    from haq_rl.pretrain import PretrainConfig, get_pretrained

    spec = default_env.unwrapped.task.spec
    env_model = default_env.unwrapped.scorer.evaluator.model
    reference, meta = get_pretrained(PretrainConfig(model=spec.model, dataset=spec.dataset))
    assert meta["source"] == "shipped"
    for (name, value), (_, expected) in zip(env_model.state_dict().items(),
                                            reference.state_dict().items(), strict=True):
        assert torch.equal(value, expected), name


def test_budget_feature_tracks_the_projected_cost():
    env = gym.make(LENET_ID, budget_feature=True)
    unwrapped = env.unwrapped
    gym_check_env(unwrapped, skip_render_check=True)
    observation, _ = env.reset(seed=0)
    assert observation.shape == (len(FEATURE_NAMES) + 1,)
    start = observation[-1]
    assert start == pytest.approx(unwrapped.scorer.minimum_cost() / unwrapped.scorer.budget_cost / 2, rel=1e-5)
    previous = start
    for _ in range(unwrapped.steps_per_episode - 1):
        observation, *_ = env.step(np.ones(1, np.float32))  # 8 bits: the cost can only grow
        assert observation[-1] >= previous
        previous = observation[-1]
    assert previous > 0.5  # all-8-bit proposals are over budget: the wall will cut
    env.close()


def test_per_episode_finetune_changes_accuracy_and_restores_the_float_model():
    """HAQ's optional short fine-tune: real QAT steps, float weights back afterwards."""
    plain = gym.make(LENET_ID).unwrapped
    tuned = gym.make(LENET_ID, finetune_steps=8, finetune_lr=0.01).unwrapped
    weights_before = {k: v.clone() for k, v in tuned.scorer.evaluator.model.state_dict().items()}
    layers = len(plain.scorer.evaluator.layer_names)
    w_bits, a_bits = np.full(layers, 2), np.full(layers, 8)  # 2-bit k-means weights lose accuracy
    before = plain.scorer.evaluator.accuracy(w_bits, a_bits)
    after = tuned.scorer.evaluator.accuracy(w_bits, a_bits)
    assert after > before  # fine-tuning recovers some of what 2 bits lose
    for name, value in tuned.scorer.evaluator.model.state_dict().items():
        assert torch.equal(value, weights_before[name]), name
    assert tuned.scorer.evaluator._measure().accuracy == tuned.scorer.evaluator.float_accuracy
    # Same seed, same fine-tune batches: a second env reproduces the result.
    again = gym.make(LENET_ID, finetune_steps=8, finetune_lr=0.01).unwrapped
    assert again.scorer.evaluator.accuracy(w_bits, a_bits) == after


def test_make_vec_async_runs_an_episode():
    """Forked workers of AsyncVectorEnv start with one torch thread (the parent's pool does
    not survive fork), so they answer instead of hanging."""
    vec = gym.make_vec(LENET_ID, num_envs=2, vectorization_mode="async")
    try:
        observations, _ = vec.reset(seed=0)
        assert observations.shape == (2, len(FEATURE_NAMES))
        terminated = np.zeros(2, dtype=bool)
        steps = 0
        while not terminated.all():
            observations, rewards, terminated, _, infos = vec.step(np.zeros((2, 1), np.float32))
            steps += 1
        assert steps == vec.call("get_wrapper_attr", "steps_per_episode")[0]
        assert np.isfinite(rewards).all() and (infos["cost_ratio"] <= infos["budget_ratio"] + 1e-9).all()
    finally:
        vec.close()
