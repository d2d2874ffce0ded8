"""SB3 callbacks of the search loop: per-episode records and a progress bar."""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from stable_baselines3.common.callbacks import BaseCallback

from haq_rl.agent.noise import TruncatedNormalNoise
from haq_rl.progress import EpisodeBar

logger = logging.getLogger(__name__)

#: An episode record sink: a list to append to, or a function called with each record.
EpisodeSink = list[dict[str, Any]] | Callable[[dict[str, Any]], None]

#: Info keys added by SB3 / Gymnasium wrappers, not by the environment.
_WRAPPER_KEYS = frozenset({"terminal_observation", "TimeLimit.truncated", "episode", "_final_info"})


def _plain(value: Any) -> Any:
    """Copy arrays (SB3 reuses buffers) and turn numpy scalars into python ones."""
    if isinstance(value, np.ndarray):
        return value.copy()
    if isinstance(value, np.generic):
        return value.item()
    return value


class EpisodeRecorder(BaseCallback):
    """Emit one record (dict) per finished episode.

    A record has ``episode`` (0-based, counted over the model's life), ``timesteps``
    (``model.num_timesteps`` at the episode end), ``reward`` (the last step's reward,
    i.e. the episode reward of a terminal-reward env), ``exploration`` ("random" for
    warm-up episodes, "policy" after), ``noise_sigma`` (std used, or None) and then every
    key of the last step's ``info`` except the wrappers' bookkeeping keys (arrays copied).
    An env key never overrides the five keys above.

    Args:
        sink: list to append records to, or a callable receiving each record. Records
            are also kept in ``self.records`` unless ``keep=False``.
        keep: keep the records in ``self.records``.
    """

    def __init__(
        self, sink: EpisodeSink | None = None, *, keep: bool = True, verbose: int = 0
    ) -> None:
        super().__init__(verbose)
        self.sink = sink
        self.keep = keep
        self.records: list[dict[str, Any]] = []
        self.episodes = 0

    def _on_training_start(self) -> None:
        # Continue the numbering across learn() calls that continue the same run.
        self.episodes = max(self.episodes, int(getattr(self.model, "_episode_num", 0)))

    def _on_step(self) -> bool:
        dones = self.locals["dones"]
        infos = self.locals["infos"]
        rewards = self.locals["rewards"]
        for i, done in enumerate(dones):
            if done:
                self._emit(self._record(float(rewards[i]), infos[i]))
        return True

    def _record(self, reward: float, info: dict[str, Any]) -> dict[str, Any]:
        learning_starts = int(getattr(self.model, "learning_starts", 0))
        # The last step of this episode began at num_timesteps - n_envs (the count grows by
        # n_envs per step); SB3 chose it at random iff that count was below learning_starts.
        n_envs = self.training_env.num_envs if self.training_env is not None else 1
        random_phase = self.num_timesteps - n_envs < learning_starts
        noise = getattr(self.model, "action_noise", None)
        # SB3 calls noise.reset() only after the callbacks, so sigma is this episode's.
        sigma = (
            noise.sigma if isinstance(noise, TruncatedNormalNoise) and not random_phase else None
        )
        record: dict[str, Any] = {
            "episode": self.episodes,
            "timesteps": int(self.num_timesteps),
            "reward": reward,
            "exploration": "random" if random_phase else "policy",
            "noise_sigma": sigma,
        }
        for key, value in info.items():
            if key not in _WRAPPER_KEYS and key not in record:
                record[key] = _plain(value)
        self.episodes += 1
        return record

    def _emit(self, record: dict[str, Any]) -> None:
        if self.keep:
            self.records.append(record)
        if isinstance(self.sink, list):
            self.sink.append(record)
        elif self.sink is not None:
            self.sink(record)
        logger.debug("episode %d: reward %.6g", record["episode"], record["reward"])


class EpisodeProgressBar(BaseCallback):
    """tqdm bar counting episodes, showing the last and best reward.

    Args:
        total_episodes: length of the bar (episodes of this ``learn()`` call).
        extra_keys: info keys shown for the best episode, e.g. ``("accuracy",
            "cost_ratio")`` appear as ``best_accuracy`` / ``best_cost_ratio``.
        desc: bar label.
        disable: hide the bar (None: tqdm's default, hidden when not a terminal).
    """

    def __init__(
        self,
        total_episodes: int,
        extra_keys: Sequence[str] = (),
        *,
        desc: str = "search",
        disable: bool | None = False,
        verbose: int = 0,
    ) -> None:
        super().__init__(verbose)
        self.total_episodes = int(total_episodes)
        self.extra_keys = tuple(extra_keys)
        self.desc = desc
        self.disable = disable
        self.best_reward = -math.inf
        self.best_info: dict[str, Any] = {}
        self.episodes = 0
        self._bar: EpisodeBar | None = None

    def _on_training_start(self) -> None:
        self._bar = EpisodeBar(self.total_episodes, self.desc, disable=self.disable)
        self._bar.start()

    def _on_step(self) -> bool:
        for i, done in enumerate(self.locals["dones"]):
            if done:
                self._update(float(self.locals["rewards"][i]), self.locals["infos"][i])
        return True

    def _update(self, reward: float, info: dict[str, Any]) -> None:
        if reward > self.best_reward:
            self.best_reward = reward
            self.best_info = {k: _plain(info[k]) for k in self.extra_keys if k in info}
        self.episodes += 1
        if self._bar is None:
            return
        postfix: dict[str, Any] = {"reward": reward, "best": self.best_reward}
        postfix.update({f"best_{key}": value for key, value in self.best_info.items()})
        self._bar.show(self.episodes, postfix)

    def _on_training_end(self) -> None:
        if self._bar is not None:
            self._bar.close()


class RolloutStartCallback(BaseCallback):
    """Calls ``hook()`` at the start of every rollout (with HAQ's one-episode rollouts: at
    every episode start, after the previous episode's update): the point where the agent,
    its replay buffer and the random streams form a consistent checkpoint."""

    def __init__(self, hook: Callable[[], None], verbose: int = 0) -> None:
        super().__init__(verbose)
        self.hook = hook

    def _on_rollout_start(self) -> None:
        self.hook()

    def _on_step(self) -> bool:
        return True
