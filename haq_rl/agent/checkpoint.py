"""Saving and loading an agent with its replay buffer, for resumable searches.

Nothing here unpickles code. SB3's own ``save`` writes a zip whose ``data`` entries may be
cloudpickle, and its replay buffer is a pickle: a run directory someone hands you could
run code on ``--resume``. So an agent is three plain files instead:

- ``agent.pt``: the networks' and optimizers' ``state_dict`` s (SB3's ``get_parameters``),
  SAC's entropy coefficient, the agent's settings (:class:`AgentConfig`) and its training
  counters, the noise generator, anchor and elite: tensors, numbers, strings, lists and
  dicts only, read back with ``torch.load(weights_only=True)``;
- ``actor.pt``: the actor's ``state_dict`` and the settings that rebuild it, all a
  rollout at a new budget needs (:func:`load_actor`);
- ``replay_buffer.npz``: the replay buffer's arrays and counters (``np.load`` with
  ``allow_pickle=False``).

The agent is rebuilt with :func:`~haq_rl.agent.factory.make_agent` from the saved settings
and then given the saved state, as SB3's ``load`` does (``_last_obs`` stays None: the next
``learn`` resets the env, as SB3's ``force_reset`` does).
"""

from __future__ import annotations

import base64
import json
import random
from collections import deque
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import numpy as np
import torch

from haq_rl.agent.config import AgentConfig
from haq_rl.agent.noise import TruncatedNormalNoise
from haq_rl.checkpoint_io import atomic_torch_save, read_torch_file
from haq_rl.errors import CheckpointError, DataFormatError, MissingPathError
from haq_rl.fileio import NUMPY_READ_ERRORS, atomic_write, parse_json

if TYPE_CHECKING:
    from haq_rl.agent.algos import HaqAlgorithmMixin

AGENT_FORMAT_VERSION = 1

#: The replay buffer arrays saved (SB3's ReplayBuffer fields).
_REPLAY_ARRAYS = ("observations", "next_observations", "actions", "rewards", "dones", "timeouts")
#: Training counters of SB3's off-policy algorithm that the next updates depend on
#: (``_n_updates``: TD3's policy delay; ``_episode_num``: episode numbering).
_COUNTERS = ("num_timesteps", "_total_timesteps", "_episode_num", "_n_updates", "_current_progress_remaining")


def save_agent(model: Any, agent_path: Path, actor_path: Path, replay_path: Path) -> None:
    """Write an agent of :func:`~haq_rl.agent.factory.make_agent` (``agent.pt``), its actor
    alone (``actor.pt``) and its replay buffer (npz)."""
    settings = json.dumps(model.haq_config.to_dict())
    counters = {name: getattr(model, name) for name in _COUNTERS}
    counters["ep_info_buffer"] = list(model.ep_info_buffer or [])
    counters["ep_success_buffer"] = list(model.ep_success_buffer or [])
    counters["anchor_sigma"] = float(model.anchor_sigma)
    counters["elite_imitation_steps"] = int(model.elite_imitation_steps)
    noise = model.action_noise
    if isinstance(noise, TruncatedNormalNoise):
        counters["noise"] = {"episodes": noise.episodes, "rng": noise._rng.bit_generator.state}
    _, variable_names = model._get_torch_save_params()
    atomic_torch_save({
        "format_version": AGENT_FORMAT_VERSION, "kind": "haq-rl agent", "config": settings,
        "params": model.get_parameters(),
        "variables": {name: _attribute(model, name).detach().cpu() for name in variable_names},
        "counters": json.dumps(counters, default=_json_number),
        "anchor": None if model.anchor_actions is None else torch.from_numpy(np.array(model.anchor_actions)),
        "elite": None if model.elite is None else [torch.from_numpy(np.array(part)) for part in model.elite],
    }, agent_path)
    atomic_torch_save({"format_version": AGENT_FORMAT_VERSION, "kind": "haq-rl actor", "config": settings,
                       "actor": model.actor.state_dict()}, actor_path)
    buffer = model.replay_buffer
    arrays = {name: getattr(buffer, name) for name in _REPLAY_ARRAYS if getattr(buffer, name) is not None}
    arrays["counters"] = np.array([buffer.pos, int(buffer.full), buffer.episodes_stored], dtype=np.int64)
    arrays["rewards_kept"] = np.array([np.nan if buffer.baseline is None else buffer.baseline,
                                       np.nan if buffer.last_episode_reward is None else buffer.last_episode_reward])
    atomic_write(replay_path, lambda stream: np.savez(stream, **arrays))


def load_agent(agent_path: Path, replay_path: Path, env: Any) -> Any:
    """The agent saved by :func:`save_agent`, attached to ``env``, with its replay buffer.

    Raises MissingPathError for a missing file and CheckpointError (one line) for a file
    that is not a haq-rl agent or does not fit ``env``.
    """
    from haq_rl.agent.factory import make_agent

    payload = read_torch_file(agent_path, {"format_version", "config", "params", "counters"}, "haq-rl agent file")
    config = _settings(payload, agent_path)
    model = make_agent(env, config)
    try:
        model.set_parameters(payload["params"], exact_match=True, device=model.device)
        for name, value in (payload.get("variables") or {}).items():
            _attribute(model, name).data.copy_(value)
        counters = parse_json(payload["counters"], f"{agent_path} counters")
        for name in _COUNTERS:
            setattr(model, name, counters[name])
        window = model._stats_window_size
        model.ep_info_buffer = deque(counters["ep_info_buffer"], maxlen=window)
        model.ep_success_buffer = deque(counters["ep_success_buffer"], maxlen=window)
        haq = cast("HaqAlgorithmMixin", model)  # make_agent builds HaqDDPG, HaqTD3 or HaqSAC
        haq.anchor_sigma = float(counters["anchor_sigma"])
        haq.elite_imitation_steps = int(counters["elite_imitation_steps"])
        if payload.get("anchor") is not None:
            haq.anchor_actions = payload["anchor"].numpy()
        if payload.get("elite") is not None:
            observations, actions = (part.numpy() for part in payload["elite"])
            haq.elite = (observations, actions)
        if "noise" in counters and isinstance(model.action_noise, TruncatedNormalNoise):
            model.action_noise.episodes = int(counters["noise"]["episodes"])
            model.action_noise._rng.bit_generator.state = counters["noise"]["rng"]
    except (KeyError, TypeError, ValueError, RuntimeError, AttributeError) as error:
        raise CheckpointError(f"{agent_path} does not fit this search's agent: {_first_line(error)}") from None
    _load_replay(model.replay_buffer, replay_path)
    return model


def load_actor(actor_path: Path, env: Any) -> Any:
    """An agent for ``env`` whose actor has the weights of ``actor.pt``: enough for
    ``predict(deterministic=True)``; nothing else of the run is read."""
    from haq_rl.agent.factory import make_agent

    payload = read_torch_file(actor_path, {"format_version", "config", "actor"}, "haq-rl actor file")
    model = make_agent(env, _settings(payload, actor_path))
    try:
        model.actor.load_state_dict(payload["actor"], strict=True)
    except (RuntimeError, TypeError, AttributeError) as error:
        raise CheckpointError(f"{actor_path} does not fit this run's env: {_first_line(error)}") from None
    return model


def _settings(payload: dict[str, Any], path: Path) -> AgentConfig:
    if payload["format_version"] != AGENT_FORMAT_VERSION:
        raise CheckpointError(f"{path} has format_version {payload['format_version']!r}; this haq-rl reads "
                              f"{AGENT_FORMAT_VERSION}")
    try:
        return AgentConfig.from_dict(parse_json(payload["config"], f"{path} config"))
    except (TypeError, ValueError) as error:
        raise CheckpointError(f"{path} holds no valid agent settings: {_first_line(error)}") from None


def _load_replay(buffer: Any, path: Path) -> None:
    """Fill ``buffer`` with the arrays of ``path``.

    A buffer saved with another number of envs (a resume with other ``--workers``) is
    laid out anew: SB3 samples single transitions, so the saved ones, oldest first, fill
    the new ``(rows, n_envs)`` slots in order (the oldest few are dropped when they do not
    fill a whole row of envs).
    """
    if not Path(path).is_file():
        raise MissingPathError(f"replay buffer not found: {path}")
    try:
        with np.load(path, allow_pickle=False) as data:
            saved = {name: data[name] for name in _REPLAY_ARRAYS if getattr(buffer, name) is not None}
            pos, full, stored = (int(v) for v in data["counters"])
            baseline, last = (float(v) for v in data["rewards_kept"])
        rows = next(iter(saved.values())).shape[0]
        if not 0 <= pos < rows:
            raise ValueError(f"position {pos} outside its {rows} rows")
        count = _fill(buffer, saved, pos, bool(full))
    except NUMPY_READ_ERRORS + (StopIteration,) as error:
        raise DataFormatError(f"{path} is not a replay buffer of this agent: {_first_line(error)}") from None
    buffer.full = count == buffer.buffer_size * buffer.n_envs
    buffer.pos = 0 if buffer.full else count // buffer.n_envs
    buffer.episodes_stored = stored
    buffer.baseline = None if np.isnan(baseline) else baseline
    buffer.last_episode_reward = None if np.isnan(last) else last


def _fill(buffer: Any, saved: dict[str, np.ndarray], pos: int, full: bool) -> int:
    """Copy the saved transitions into ``buffer``; returns how many it now holds."""
    for name, array in saved.items():
        current = getattr(buffer, name)
        if array.dtype != current.dtype or array.shape[2:] != current.shape[2:] or array.ndim != current.ndim:
            raise ValueError(f"{name} is {array.dtype}{list(array.shape)}, the agent needs "
                             f"{current.dtype}{list(current.shape)}")
    first = next(iter(saved.values()))
    if first.shape[:2] == (buffer.buffer_size, buffer.n_envs):
        for name, array in saved.items():
            getattr(buffer, name)[...] = array
        return (buffer.buffer_size if full else pos) * buffer.n_envs
    order = np.r_[pos:first.shape[0], 0:pos] if full else np.arange(pos)  # rows, oldest first
    capacity = buffer.buffer_size * buffer.n_envs
    for name, array in saved.items():
        flat = array[order].reshape(len(order) * array.shape[1], *array.shape[2:])
        keep = min(len(flat), capacity) // buffer.n_envs * buffer.n_envs
        target = getattr(buffer, name)
        target[: keep // buffer.n_envs] = flat[len(flat) - keep:].reshape(-1, buffer.n_envs, *array.shape[2:])
    return keep


def _attribute(model: Any, dotted: str) -> Any:
    value = model
    for part in dotted.split("."):
        value = getattr(value, part)
    return value


def _json_number(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def random_state(model: Any) -> dict[str, Any]:
    """The random streams an agent's next episodes draw from, as JSON-ready lists.

    NumPy's global generator (SB3's replay sampling), torch's (TD3's target noise, SAC's
    sampling), Python's, and the action space's (HAQ's uniform warm-up). The exploration
    noise keeps its own generator inside agent.pt. Building the agent reseeds all of
    these from the seed, so a resumed search restores them with :func:`restore_random_state`
    to continue exactly where the checkpoint was taken.
    """
    name, keys, position, has_gauss, cached = np.random.get_state()
    return {
        "numpy": [name, np.asarray(keys).tolist(), int(position), int(has_gauss), float(cached)],
        "torch": base64.b64encode(torch.get_rng_state().numpy().tobytes()).decode("ascii"),
        "python": _lists(random.getstate()),
        "action_space": _lists(model.action_space.np_random.bit_generator.state),
    }


def restore_random_state(model: Any, state: dict[str, Any]) -> None:
    """Undo the reseeding at load: the streams as :func:`random_state` saved them."""
    name, keys, position, has_gauss, cached = state["numpy"]
    np.random.set_state((name, np.asarray(keys, dtype=np.uint32), position, has_gauss, cached))
    torch.set_rng_state(torch.from_numpy(np.frombuffer(base64.b64decode(state["torch"]), dtype=np.uint8).copy()))
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    model.action_space.np_random.bit_generator.state = state["action_space"]


def _lists(value: Any) -> Any:
    """Tuples to lists, recursively (JSON keeps lists; the restorers turn them back)."""
    if isinstance(value, tuple | list):
        return [_lists(item) for item in value]
    if isinstance(value, dict):
        return {key: _lists(item) for key, item in value.items()}
    return value
