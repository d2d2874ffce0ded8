"""make_agent / learn_episodes / callbacks on the toy env (HAQ's contract)."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest
import torch

from haq_rl.agent import (
    AgentConfig,
    EpisodeProgressBar,
    EpisodeRecorder,
    EpisodeRewardReplayBuffer,
    HaqDDPG,
    HaqSAC,
    HaqTD3,
    TruncatedNormalNoise,
    episode_length,
    learn_episodes,
    make_agent,
)
from haq_rl.errors import ConfigError
from tests.agent.toy_env import ToyQuantEnv, bits_to_action

T = 6
FAST = dict(warmup_episodes=2, replay_episodes=16, batch_size=16, hidden_sizes=(32, 32))


@pytest.fixture(autouse=True)
def one_torch_thread() -> Iterator[None]:
    # Tiny MLPs: extra threads only add contention (10x slower on a loaded 2-core box).
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def greedy_reward(model: object, env: ToyQuantEnv) -> float:
    obs, _ = env.reset(seed=123)
    done, reward = False, 0.0
    while not done:
        action, _ = model.predict(obs, deterministic=True)  # type: ignore[attr-defined]
        obs, reward, done, _, _ = env.step(action)
    return float(reward)


def test_make_agent_haq_settings_and_lrs() -> None:
    model = make_agent(ToyQuantEnv(), AgentConfig())
    assert isinstance(model, HaqDDPG)
    assert model.steps_per_episode == T
    assert model.buffer_size == 128 * T and model.learning_starts == 20 * T
    assert model.batch_size == 64 and model.tau == 0.01 and model.gamma == 1.0
    assert model.gradient_steps == -1  # SB3: one gradient step per env step of the episode
    assert isinstance(model.replay_buffer, EpisodeRewardReplayBuffer)
    assert model.replay_buffer.baseline_decay == 0.5
    noise = model.action_noise
    assert isinstance(noise, TruncatedNormalNoise)
    assert noise.sigma == pytest.approx(1.0)  # HAQ's 0.5 on [0, 1] = 1.0 on [-1, 1]
    assert [m.out_features for m in model.actor.mu if isinstance(m, torch.nn.Linear)] == [
        300,
        300,
        1,
    ]
    q = model.critic.qf0
    assert [m.out_features for m in q if isinstance(m, torch.nn.Linear)] == [300, 300, 1]
    assert all(g["lr"] == 1e-4 for g in model.actor.optimizer.param_groups)
    assert all(g["lr"] == 1e-3 for g in model.critic.optimizer.param_groups)


def test_lrs_survive_training_and_save_load(tmp_path: object) -> None:
    model = make_agent(ToyQuantEnv(), AgentConfig(**FAST))
    learn_episodes(model, 4)
    assert model._n_updates > 0  # SB3's _update_learning_rate ran
    assert model.actor.optimizer.param_groups[0]["lr"] == 1e-4
    assert model.critic.optimizer.param_groups[0]["lr"] == 1e-3
    path = tmp_path / "agent.zip"  # type: ignore[operator]
    model.save(path)
    loaded = HaqDDPG.load(path, env=ToyQuantEnv())
    assert loaded.actor.optimizer.param_groups[0]["lr"] == 1e-4
    assert loaded.critic.optimizer.param_groups[0]["lr"] == 1e-3
    assert loaded.steps_per_episode == T


def test_ddpg_learns_toy_task() -> None:
    # HAQ's configuration, only a shorter warm-up: ~8 s on one thread.
    env = ToyQuantEnv()
    model = make_agent(env, AgentConfig(seed=0, warmup_episodes=10))
    recorder = EpisodeRecorder()
    learn_episodes(model, 80, callback=recorder)
    rewards = np.array([r["reward"] for r in recorder.records])
    assert len(rewards) == 80
    random_mean = rewards[:10].mean()  # warm-up episodes are uniform random
    assert random_mean < -0.12
    learned = greedy_reward(model, ToyQuantEnv())
    assert learned > random_mean + 0.1
    assert learned > -0.06


@pytest.mark.parametrize(("algo", "cls"), [("td3", HaqTD3), ("sac", HaqSAC)])
def test_td3_and_sac_run(algo: str, cls: type) -> None:
    model = make_agent(ToyQuantEnv(), AgentConfig(algo=algo, **FAST))
    assert isinstance(model, cls)
    recorder = EpisodeRecorder()
    learn_episodes(model, 5, callback=recorder)
    assert len(recorder.records) == 5
    assert model.actor.optimizer.param_groups[0]["lr"] == 1e-4
    assert model.critic.optimizer.param_groups[0]["lr"] == 1e-3
    if algo == "sac":
        assert model.action_noise is None
        assert model.ent_coef_optimizer.param_groups[0]["lr"] == 1e-4
    assert np.isfinite(model.replay_buffer.baseline)


def run_rewards(seed: int, episodes: int = 8) -> list[float]:
    recorder = EpisodeRecorder()
    model = make_agent(ToyQuantEnv(), AgentConfig(seed=seed, **FAST))
    learn_episodes(model, episodes, callback=recorder)
    return [r["reward"] for r in recorder.records]


def test_same_seed_same_episodes() -> None:
    a, b, c = run_rewards(3), run_rewards(3), run_rewards(4)
    assert a == b
    assert a != c


def test_learn_episodes_counts_and_continues_without_second_warmup() -> None:
    model = make_agent(ToyQuantEnv(), AgentConfig(**FAST))
    recorder = EpisodeRecorder()
    learn_episodes(model, 3, callback=recorder)
    learn_episodes(model, 2, callback=recorder)
    assert model.num_timesteps == 5 * T
    records = recorder.records
    assert [r["episode"] for r in records] == [0, 1, 2, 3, 4]
    assert [r["exploration"] for r in records] == ["random"] * 2 + ["policy"] * 3
    # SB3 calls noise.reset() at every learn() start; it must not count as an episode.
    assert model.action_noise.episodes == 5
    assert [r["noise_sigma"] for r in records[2:]] == pytest.approx([1.0, 0.99, 0.99**2])
    assert model.replay_buffer.size() == 5 * T


def test_recorder_sink_and_info_keys() -> None:
    rows: list[dict] = []
    seen: list[int] = []
    model = make_agent(ToyQuantEnv(), AgentConfig(**FAST))
    learn_episodes(
        model,
        3,
        callback=[
            EpisodeRecorder(rows),
            EpisodeRecorder(lambda r: seen.append(r["episode"]), keep=False),
        ],
    )
    assert seen == [0, 1, 2] and len(rows) == 3
    row = rows[-1]
    assert {
        "episode",
        "timesteps",
        "reward",
        "exploration",
        "noise_sigma",
        "accuracy",
        "cost_ratio",
        "w_bits",
    } <= set(row)
    assert row["applied_actions"].shape == (T, 1)
    assert "terminal_observation" not in row and isinstance(row["episode"], int)
    assert row["accuracy"] == pytest.approx(100 * (1 + row["reward"]))


def test_progress_bar_tracks_best() -> None:
    bar = EpisodeProgressBar(4, extra_keys=("accuracy", "cost_ratio"), disable=True)
    recorder = EpisodeRecorder()
    model = make_agent(ToyQuantEnv(), AgentConfig(**FAST))
    learn_episodes(model, 4, callback=[bar, recorder])
    best = max(recorder.records, key=lambda r: r["reward"])
    assert bar.best_reward == pytest.approx(best["reward"])
    assert bar.best_info == pytest.approx(
        {"accuracy": best["accuracy"], "cost_ratio": best["cost_ratio"]}
    )


def test_applied_actions_reach_the_agent_buffer() -> None:
    cap = float(bits_to_action(5.0))
    model = make_agent(ToyQuantEnv(cap=cap), AgentConfig(**FAST))
    learn_episodes(model, 3)
    stored = model.replay_buffer.actions[: 3 * T, 0, 0]
    assert stored.max() <= cap + 1e-6


def test_episode_length_lookup() -> None:
    env = ToyQuantEnv()
    assert episode_length(env) == T
    assert episode_length(env, 9) == 9
    del env.episode_length
    with pytest.raises(ConfigError, match="steps_per_episode"):
        episode_length(env)
    with pytest.raises(ConfigError, match="steps_per_episode=0"):
        episode_length(env, 0)


def test_joint_mode_two_dim_actions() -> None:
    model = make_agent(ToyQuantEnv(action_dim=2), AgentConfig(**FAST))
    learn_episodes(model, 3)
    assert model.replay_buffer.actions.shape[-1] == 2
