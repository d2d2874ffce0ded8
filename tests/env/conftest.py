"""Environments shared by the env tests (building one loads a cached pretrained model)."""

import gymnasium as gym
import pytest

import haq_rl.env  # noqa: F401  (registers the ids)

LENET_ID = "haq_rl/LeNet5Size-v1"


@pytest.fixture(scope="session")
def default_env():
    env = gym.make(haq_rl.env.DEFAULT_ENV_ID)
    yield env
    env.close()


@pytest.fixture(scope="session")
def lenet_env():
    env = gym.make(LENET_ID)
    yield env
    env.close()
