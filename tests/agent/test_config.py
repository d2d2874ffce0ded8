"""AgentConfig: HAQ defaults and validation."""

from __future__ import annotations

import pytest

from haq_rl.agent import AgentConfig
from haq_rl.errors import ConfigError


def test_defaults_are_haq() -> None:
    c = AgentConfig()
    assert c.algo == "ddpg"
    assert c.hidden_sizes == (300, 300)
    assert (c.lr_actor, c.lr_critic) == (1e-4, 1e-3)
    assert (c.tau, c.gamma, c.batch_size) == (0.01, 1.0, 64)
    assert (c.replay_episodes, c.warmup_episodes) == (128, 20)
    assert (c.noise_sigma, c.noise_decay, c.baseline_decay) == (0.5, 0.99, 0.5)
    assert c.gradient_steps_per_episode is None


@pytest.mark.parametrize(
    ("field", "value", "fragment"),
    [
        ("algo", "ddgp", "did you mean 'ddpg'"),
        ("hidden_sizes", (), "hidden_sizes"),
        ("hidden_sizes", (300, 0), "hidden_sizes"),
        ("lr_actor", 0.0, "lr_actor=0.0 is out of range (0.0, inf)"),
        ("lr_critic", float("nan"), "lr_critic"),
        ("tau", 1.5, "tau=1.5 is out of range (0.0, 1.0]"),
        ("gamma", -0.1, "gamma=-0.1 is out of range [0.0, 1.0]"),
        ("batch_size", 0, "batch_size=0 must be an integer >= 1"),
        ("batch_size", True, "batch_size=True"),
        ("replay_episodes", 2.5, "replay_episodes=2.5"),
        ("warmup_episodes", -1, "warmup_episodes=-1 must be an integer >= 0"),
        ("noise_sigma", -0.5, "noise_sigma"),
        ("noise_decay", 0.0, "noise_decay=0.0 is out of range (0.0, 1.0]"),
        ("baseline_decay", 1.0, "baseline_decay=1.0 is out of range [0.0, 1.0)"),
        ("gradient_steps_per_episode", 0, "gradient_steps_per_episode=0"),
        ("seed", -3, "seed=-3"),
        ("device", "gpu", "device='gpu'"),
    ],
)
def test_bad_values_raise_config_error(field: str, value: object, fragment: str) -> None:
    with pytest.raises(ConfigError) as excinfo:
        AgentConfig(**{field: value})
    assert fragment in str(excinfo.value)
    assert isinstance(excinfo.value, ValueError)


def test_round_trip_and_list_hidden_sizes() -> None:
    c = AgentConfig(algo="td3", hidden_sizes=[64, 32], seed=3, device="cuda:1")  # type: ignore[arg-type]
    assert c.hidden_sizes == (64, 32)
    data = c.to_dict()
    assert data["hidden_sizes"] == [64, 32]
    assert AgentConfig.from_dict(data) == c
    hash(c)  # frozen and hashable


def test_from_dict_rejects_unknown_keys() -> None:
    with pytest.raises(ConfigError, match="unknown agent config keys"):
        AgentConfig.from_dict({"algo": "ddpg", "lr": 1e-3})


def test_frozen() -> None:
    c = AgentConfig()
    with pytest.raises(AttributeError):
        c.tau = 0.5  # type: ignore[misc]
