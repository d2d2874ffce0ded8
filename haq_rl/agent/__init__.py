"""The RL agent: stable-baselines3's DDPG configured as HAQ (Wang et al., CVPR 2019).

Never imports :mod:`haq_rl.env`: any environment with HAQ's contract (Box(-1, 1) actions,
fixed episode length, reward at the last step, optional ``info["applied_actions"]``)
can be driven.

Typical use::

    config = AgentConfig(seed=0)
    model = make_agent(env, config)                  # HaqDDPG
    recorder = EpisodeRecorder(sink=rows)            # one dict per episode
    learn_episodes(model, 300, callback=[recorder, EpisodeProgressBar(300)])
"""

from haq_rl.agent.algos import ALGO_CLASSES, HaqAlgorithmMixin, HaqDDPG, HaqSAC, HaqTD3
from haq_rl.agent.callbacks import (
    EpisodeProgressBar,
    EpisodeRecorder,
    EpisodeSink,
    RolloutStartCallback,
)
from haq_rl.agent.checkpoint import (
    load_actor,
    load_agent,
    random_state,
    restore_random_state,
    save_agent,
)
from haq_rl.agent.config import ALGOS, AgentConfig
from haq_rl.agent.factory import episode_length, learn_episodes, make_agent
from haq_rl.agent.noise import TruncatedNormalNoise, run_length_decay, truncated_normal
from haq_rl.agent.replay import APPLIED_ACTIONS_KEY, EpisodeRewardReplayBuffer

__all__ = [
    "ALGOS",
    "ALGO_CLASSES",
    "APPLIED_ACTIONS_KEY",
    "AgentConfig",
    "EpisodeProgressBar",
    "EpisodeRecorder",
    "EpisodeRewardReplayBuffer",
    "EpisodeSink",
    "HaqAlgorithmMixin",
    "HaqDDPG",
    "HaqSAC",
    "HaqTD3",
    "RolloutStartCallback",
    "TruncatedNormalNoise",
    "episode_length",
    "learn_episodes",
    "load_actor",
    "load_agent",
    "make_agent",
    "random_state",
    "restore_random_state",
    "run_length_decay",
    "save_agent",
    "truncated_normal",
]
