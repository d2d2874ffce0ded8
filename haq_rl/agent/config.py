"""The one configuration object of the agent: HAQ's DDPG settings by default.

Defaults follow the HAQ paper (Wang et al., CVPR 2019, Sec. 3.3) and its released code
(mit-han-lab/haq, ``rl_quantize.py`` and ``lib/rl/ddpg.py``): 300-300 actor and critic,
Adam with lr 1e-4 (actor) / 1e-3 (critic), tau 0.01, gamma 1, batch 64, a replay memory
of 128 transitions per step of an episode, 20 warm-up episodes of uniform random
actions, truncated-normal exploration with sigma 0.5 decayed by 0.99 per episode, and a
moving-average reward baseline with alpha 0.5.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any

from haq_rl.errors import ConfigError, check_device, check_integer, check_seed, unknown_name_message

#: SB3 algorithms ``make_agent`` can build. "ddpg" is HAQ's agent; the others are for research.
ALGOS: tuple[str, ...] = ("ddpg", "td3", "sac")



@dataclass(frozen=True)
class AgentConfig:
    """Settings of the RL agent (all validated on construction).

    Attributes:
        algo: "ddpg" (HAQ), "td3" or "sac". All share the architecture, replay buffer
            and warm-up; SAC explores through its entropy term and gets no action noise.
        hidden_sizes: hidden layer widths of the actor and of the critic (HAQ: 300, 300).
        lr_actor: Adam learning rate of the actor (HAQ: 1e-4).
        lr_critic: Adam learning rate of the critic (HAQ: 1e-3); SAC's entropy
            coefficient uses ``lr_actor``.
        tau: soft target-update rate (HAQ: 0.01).
        gamma: discount (HAQ: 1.0; episodes are short and end with ``terminated``).
        batch_size: minibatch size of one gradient step (HAQ: 64).
        replay_episodes: replay capacity in episodes; the buffer holds
            ``replay_episodes * T`` transitions (HAQ: 128 per layer-step).
        warmup_episodes: episodes of uniform random actions before the first update
            (HAQ: 20).
        noise_sigma: initial std of the truncated-normal exploration noise, in HAQ's
            [0, 1] action units (HAQ: 0.5). The agent acts in SB3's [-1, 1] units, where
            the std is ``2 * noise_sigma``.
        noise_decay: per-episode multiplicative decay of the noise std after warm-up
            (HAQ: 0.99).
        baseline_decay: weight of the old value in the reward baseline,
            ``b <- decay * b + (1 - decay) * mean(batch rewards)``. HAQ's code uses
            ``moving_alpha = 0.5``, i.e. decay 0.5.
        gradient_steps_per_episode: gradient steps after each episode; None means one
            per environment step (T), which is what HAQ does.
        seed: seeds python, numpy, torch, the env's first reset and the noise.
        device: torch device for the networks ("cpu" is fastest for these small MLPs).
    """

    algo: str = "ddpg"
    hidden_sizes: tuple[int, ...] = (300, 300)
    lr_actor: float = 1e-4
    lr_critic: float = 1e-3
    tau: float = 0.01
    gamma: float = 1.0
    batch_size: int = 64
    replay_episodes: int = 128
    warmup_episodes: int = 20
    noise_sigma: float = 0.5
    noise_decay: float = 0.99
    baseline_decay: float = 0.5
    gradient_steps_per_episode: int | None = None
    seed: int = 0
    device: str = "cpu"

    def __post_init__(self) -> None:
        # Lists come in from JSON / the CLI; store a tuple so the config stays hashable.
        if isinstance(self.hidden_sizes, list):
            object.__setattr__(self, "hidden_sizes", tuple(self.hidden_sizes))
        self._validate()

    def _validate(self) -> None:
        if self.algo not in ALGOS:
            raise ConfigError(unknown_name_message("algo", str(self.algo), ALGOS))
        if (
            not isinstance(self.hidden_sizes, tuple)
            or not self.hidden_sizes
            or not all(_is_int(h) and h >= 1 for h in self.hidden_sizes)
        ):
            raise ConfigError(
                f"hidden_sizes={self.hidden_sizes!r} must be a non-empty sequence of integers >= 1"
            )
        _check_range("lr_actor", self.lr_actor, 0.0, math.inf, low_open=True)
        _check_range("lr_critic", self.lr_critic, 0.0, math.inf, low_open=True)
        _check_range("tau", self.tau, 0.0, 1.0, low_open=True)
        _check_range("gamma", self.gamma, 0.0, 1.0)
        check_integer("batch_size", self.batch_size, 1)
        check_integer("replay_episodes", self.replay_episodes, 1)
        check_integer("warmup_episodes", self.warmup_episodes, 0)
        _check_range("noise_sigma", self.noise_sigma, 0.0, math.inf)
        _check_range("noise_decay", self.noise_decay, 0.0, 1.0, low_open=True)
        _check_range("baseline_decay", self.baseline_decay, 0.0, 1.0, high_open=True)
        if self.gradient_steps_per_episode is not None:
            check_integer("gradient_steps_per_episode", self.gradient_steps_per_episode, 1)
        check_seed("seed", self.seed)
        check_device(self.device)

    def to_dict(self) -> dict[str, Any]:
        """Plain dict for config.json (tuples become lists)."""
        data = asdict(self)
        data["hidden_sizes"] = list(self.hidden_sizes)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> AgentConfig:
        """Inverse of :meth:`to_dict`; unknown keys are an error, not silently dropped."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(
                f"unknown agent config keys {unknown} (allowed: {', '.join(sorted(known))})"
            )
        return cls(**data)


def _is_int(value: object) -> bool:
    # bool is an int subclass; True as a batch size is a bug, not a 1.
    return isinstance(value, int) and not isinstance(value, bool)


def _check_range(
    name: str,
    value: object,
    low: float,
    high: float,
    *,
    low_open: bool = False,
    high_open: bool = False,
) -> None:
    ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    if ok:
        v = float(value)  # type: ignore[arg-type]
        ok = (v > low if low_open else v >= low) and (v < high if high_open else v <= high)
    if not ok:
        left = "(" if low_open else "["
        right = ")" if high_open or math.isinf(high) else "]"
        raise ConfigError(f"{name}={value!r} is out of range {left}{low}, {high}{right}")
