"""The search loop: HAQ's RL agent and the baselines (random, uniform, greedy) in one harness.

Every method scores policies through the same environment (same evaluator, same
action wall, same cost table) and writes the same run directory:

    config.json        the search and env settings
    episodes.csv       one row per evaluated policy (episode, phase, reward, accuracy,
                       cost ratio, latency, energy, size, BOPs, bits of every layer)
    best_policy.json   the best policy that meets the budget (QuantPolicy JSON)
    agent.zip          the SB3 agent (RL methods), plus replay_buffer.npz and
    search_state.json  the checkpoint used by ``--resume``
"""

from __future__ import annotations

import dataclasses
import heapq
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import numpy as np

from haq_rl import __version__
from haq_rl.env import DEFAULT_ENV_ID, EnvSpec, resolve_spec
from haq_rl.env.bits import uniform_bits
from haq_rl.errors import ConfigError, MissingPathError, UnknownNameError
from haq_rl.run_dir import (
    BEST_POLICY_FILE,
    CONFIG_FILE,
    EPISODES_FILE,
    STATE_FILE,
    EpisodeLog,
    episode_columns,
    read_json,
    write_json_atomic,
)

if TYPE_CHECKING:  # SB3 is imported lazily
    from stable_baselines3.common.off_policy_algorithm import OffPolicyAlgorithm

    from haq_rl.agent import AgentConfig

logger = logging.getLogger(__name__)

RL_METHODS = ("ddpg", "td3", "sac")
BASELINE_METHODS = ("random", "uniform", "greedy")
METHODS = RL_METHODS + BASELINE_METHODS


@dataclass(frozen=True)
class SearchConfig:
    """One search. The CLI maps its flags onto these fields one to one.

    ``env`` is a registered id or a YAML spec path; ``budget``, ``hardware`` and
    ``objective`` override the spec when given. ``agent`` holds AgentConfig fields to
    override for RL methods (e.g. ``{"warmup_episodes": 5}``).
    """

    env: str = DEFAULT_ENV_ID
    method: str = "ddpg"
    episodes: int = 200
    budget: float | None = None
    hardware: str | None = None
    objective: str | None = None
    seed: int = 0
    out: str | None = None
    device: str = "cpu"
    checkpoint_every: int = 10
    progress: bool = True
    env_overrides: dict[str, Any] = field(default_factory=dict)
    agent: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise UnknownNameError("search method", self.method, METHODS)
        if not isinstance(self.episodes, int) or self.episodes < 1:
            raise ConfigError(f"episodes={self.episodes!r} must be an integer >= 1")
        if not isinstance(self.seed, int) or self.seed < 0:
            raise ConfigError(f"seed={self.seed!r} must be an integer >= 0")
        if not isinstance(self.checkpoint_every, int) or self.checkpoint_every < 1:
            raise ConfigError(f"checkpoint_every={self.checkpoint_every!r} must be an integer >= 1")
        if self.device not in ("cpu", "cuda", "auto") and not str(self.device).startswith("cuda:"):
            raise ConfigError(f"device={self.device!r} must be cpu, cuda, cuda:N or auto")

    def env_spec(self) -> EnvSpec:
        overrides = dict(self.env_overrides)
        for name in ("budget", "hardware", "objective"):
            if getattr(self, name) is not None:
                overrides[name] = getattr(self, name)
        overrides["device"] = self.device
        return resolve_spec(self.env).replace(**overrides)

    def default_run_dir(self) -> Path:
        name = self.env_spec().id.split("/")[-1]
        return Path("runs") / f"{name}-{self.method}-s{self.seed}"

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SearchConfig:
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


@dataclass
class SearchResult:
    run_dir: Path
    best: dict[str, Any]
    episodes: int
    evaluations: int
    wall_time_s: float
    best_policy_path: Path
    eval_seconds: float = 0.0
    setup_seconds: float = 0.0

    @property
    def best_accuracy(self) -> float:
        return float(self.best["accuracy"])

    @property
    def best_cost_ratio(self) -> float:
        return float(self.best["cost_ratio"])


class _Recorder:
    """Turns end-of-episode infos into episodes.csv rows and tracks the best policy."""

    def __init__(self, run_dir: Path, env: Any, spec: EnvSpec, config: SearchConfig,
                 progress: Callable[[dict[str, Any]], None] | None = None) -> None:
        self.run_dir = run_dir
        self.env = env
        self.spec = spec
        self.config = config
        self.log = EpisodeLog(run_dir / EPISODES_FILE, episode_columns(env.layer_names))
        self.best: dict[str, Any] | None = None
        self.count = 0
        self.progress = progress
        self.reset_from_log()

    def reset_from_log(self) -> None:
        """Restore the count and the best policy from the rows on disk (resumed runs)."""
        self.count = 0
        self.best = None
        for row in self.log.read_rows():
            self._consider(_row_to_info(row, self.env.layer_names))
            self.count += 1
        # best_policy.json may describe a row that a resume just dropped: rewrite it.
        if self.best is not None:
            self._write_best()
        else:
            (self.run_dir / BEST_POLICY_FILE).unlink(missing_ok=True)

    def record(self, info: dict[str, Any], phase: str) -> None:
        row = {
            "episode": self.count, "phase": phase, **{c: info.get(c) for c in (
                "reward", "accuracy", "cost_ratio", "latency_ms", "energy_uj", "size_bytes",
                "bops", "bits_lowered")},
        }
        for name, w, a in zip(self.env.layer_names, info["w_bits"], info["a_bits"], strict=True):
            row[f"w:{name}"] = int(w)
            row[f"a:{name}"] = int(a)
        self.log.append(row)
        if self._consider(info):
            self._write_best()
        self.count += 1
        if self.progress is not None:
            self.progress({**(self.best or {}), "episode": self.count})

    def _consider(self, info: dict[str, Any]) -> bool:
        within = info["cost_ratio"] <= self.env.budget_ratio + 1e-9
        if within and (self.best is None or info["reward"] > self.best["reward"]):
            self.best = {k: info[k] for k in ("reward", "accuracy", "cost_ratio", "latency_ms",
                                              "energy_uj", "size_bytes", "bops", "w_bits", "a_bits")}
            self.best["episode"] = self.count
            return True
        return False

    def _write_best(self) -> None:
        from haq_rl.quant import QuantPolicy

        assert self.best is not None
        policy = QuantPolicy.from_arrays(self.env.layer_names, self.best["w_bits"], self.best["a_bits"])
        table = self.env.cost_table
        policy.to_json(
            self.run_dir / BEST_POLICY_FILE,
            model=self.spec.model, dataset=self.spec.dataset, input_size=self.spec.input_size,
            env_id=self.spec.id, profile=getattr(table, "profile_name", self.spec.hardware),
            profile_sha256=getattr(table, "profile_sha256", None), objective=self.spec.objective,
            budget=self.spec.budget, method=self.config.method, seed=self.config.seed,
            metrics={k: _finite_or_none(self.best[k]) for k in (
                "reward", "accuracy", "cost_ratio", "latency_ms", "energy_uj", "size_bytes", "bops")},
            float_accuracy=self.env.evaluator.float_accuracy, episode=int(self.best["episode"]),
            haq_rl_version=__version__,
        )


def _finite_or_none(value: Any) -> float | None:
    """JSON has no NaN: metrics a profile does not model (e.g. energy of a proxy) are null."""
    value = float(value)
    return value if np.isfinite(value) else None


def _row_to_info(row: dict[str, str], layer_names: list[str]) -> dict[str, Any]:
    info: dict[str, Any] = {k: float(row[k]) if row.get(k) not in (None, "") else float("nan")
                            for k in ("reward", "accuracy", "cost_ratio", "latency_ms", "energy_uj",
                                      "size_bytes", "bops")}
    info["w_bits"] = np.array([int(row[f"w:{n}"]) for n in layer_names])
    info["a_bits"] = np.array([int(row[f"a:{n}"]) for n in layer_names])
    return info


def run_search(config: SearchConfig, resume: str | Path | None = None) -> SearchResult:
    """Run (or, with ``resume``, continue) a search and write its run directory."""
    from haq_rl.env.factory import build_env
    from haq_rl.seeding import seed_everything

    if resume is not None:
        run_dir = Path(resume)
        if not (run_dir / CONFIG_FILE).is_file():
            raise MissingPathError(f"cannot resume: {run_dir / CONFIG_FILE} not found (is {run_dir} a run directory?)")
        saved = read_json(run_dir / CONFIG_FILE)
        config = dataclasses.replace(SearchConfig.from_dict(saved["search"]), progress=config.progress)
    else:
        run_dir = Path(config.out) if config.out else config.default_run_dir()
        if (run_dir / EPISODES_FILE).exists():
            raise ConfigError(f"run directory {run_dir} already holds a search; use --resume {run_dir} or another --out")
    spec = config.env_spec()
    seed_everything(config.seed)
    started = time.perf_counter()
    env = build_env(spec)
    setup_seconds = time.perf_counter() - started
    run_dir.mkdir(parents=True, exist_ok=True)
    if resume is None:
        write_json_atomic(run_dir / CONFIG_FILE, {
            "format_version": 1, "haq_rl_version": __version__, "search": config.to_dict(),
            "env": spec.to_dict(), "layers": env.layer_names,
            "steps_per_episode": env.steps_per_episode, "float_accuracy": env.evaluator.float_accuracy,
            "reference_cost": env.reference_cost, "budget_cost": env.budget,
        })
    bar = _progress_bar(config)
    recorder = _Recorder(run_dir, env, spec, config, progress=bar.update_info if bar else None)
    if bar is not None:
        bar.start(recorder.count)
    try:
        if config.method in RL_METHODS:
            _search_rl(env, config, recorder)
        else:
            {"random": _search_random, "uniform": _search_uniform, "greedy": _search_greedy}[config.method](
                env, config, recorder)
    finally:
        if bar is not None:
            bar.close()
    if recorder.best is None:
        raise ConfigError(f"no evaluated policy met the budget in {run_dir}")
    return SearchResult(
        run_dir=run_dir, best=recorder.best, episodes=recorder.count,
        evaluations=env.evaluator.evaluations, wall_time_s=time.perf_counter() - started,
        best_policy_path=run_dir / BEST_POLICY_FILE, eval_seconds=env.evaluator.eval_seconds,
        setup_seconds=setup_seconds)


# --------------------------------------------------------------------------- baselines
def _search_random(env: Any, config: SearchConfig, recorder: _Recorder) -> None:
    """Uniform random actions, wall-enforced, for the same number of episodes."""
    while recorder.count < config.episodes:
        rng = np.random.default_rng([config.seed, recorder.count])
        env.reset(seed=config.seed + recorder.count)
        terminated = False
        info: dict[str, Any] = {}
        while not terminated:
            action = rng.uniform(-1, 1, size=env.action_space.shape).astype(np.float32)
            _, _, terminated, _, info = env.step(action)
        recorder.record(info, "random")


def _free_bits(env: Any, bits: int) -> tuple[np.ndarray, np.ndarray]:
    return uniform_bits(env.pinned, env.weight_only, bits)


def _search_uniform(env: Any, config: SearchConfig, recorder: _Recorder) -> None:
    """The largest uniform bits within budget first, then the other uniform widths.

    The choice needs only the cost table; the other widths (while ``episodes`` lasts)
    are evaluated as reference points for reports.
    """
    widths = list(range(env.max_bits, env.min_bits - 1, -1))
    feasible = [b for b in widths if env.cost(*_free_bits(env, b)) <= env.budget]
    chosen = feasible[0] if feasible else env.min_bits
    for bits in [chosen, *(b for b in widths if b != chosen)]:
        if recorder.count >= config.episodes:
            break
        recorder.record(env.evaluate_policy(*_free_bits(env, bits), enforce=not feasible), "uniform")


def _search_greedy(env: Any, config: SearchConfig, recorder: _Recorder) -> None:
    """Start at 8/8; repeatedly lower the bit with the least accuracy lost per cost saved.

    Lazy greedy: every knob (a layer's weight or activation bits) is scored once, then
    only the chosen knob is re-scored after each change, so the search costs about one
    evaluation per lowered bit. Stops within budget, or when the evaluation budget
    (``episodes``) runs out, in which case the action wall finishes the job.
    """
    w, a = _free_bits(env, env.max_bits)
    free = [i for i in range(len(w)) if not env.pinned[i]]
    knobs = [(i, 0) for i in free] + ([] if env.weight_only else [(i, 1) for i in free])
    current = env.evaluate_policy(w, a, enforce=False)
    recorder.record(current, "greedy")

    def score(knob: tuple[int, int]) -> float | None:
        layer, part = knob
        bits = (w, a)[part]
        if bits[layer] <= env.min_bits:
            return None
        trial_w, trial_a = w.copy(), a.copy()
        (trial_w, trial_a)[part][layer] -= 1
        saved = env.cost(w, a) - env.cost(trial_w, trial_a)
        info = env.evaluate_policy(trial_w, trial_a, enforce=False)
        recorder.record(info, "greedy")
        lost = current["accuracy"] - info["accuracy"]
        return lost / saved if saved > 0 else float("inf")

    limit = config.episodes - 1  # keep one evaluation for the action wall at the end
    heap: list[tuple[float, int, int]] = []
    for knob in knobs:
        if recorder.count >= limit or env.cost(w, a) <= env.budget:
            break
        value = score(knob)
        if value is not None:
            heapq.heappush(heap, (value, *knob))
    while heap and env.cost(w, a) > env.budget and recorder.count < limit:
        _, layer, part = heapq.heappop(heap)
        (w, a)[part][layer] -= 1
        current = env.evaluate_policy(w, a, enforce=False)
        recorder.record(current, "greedy")
        value = score((layer, part)) if recorder.count < limit else None
        if value is not None:
            heapq.heappush(heap, (value, layer, part))
    if env.cost(w, a) > env.budget:
        recorder.record(env.evaluate_policy(w, a, enforce=True), "greedy")


# --------------------------------------------------------------------------- RL
AGENT_FILE = "agent.zip"
REPLAY_FILE = "replay_buffer.pkl"


def _search_rl(env: Any, config: SearchConfig, recorder: _Recorder) -> None:
    """HAQ's agent: ``episodes - 1`` learning episodes, then one noise-free rollout.

    Every ``checkpoint_every`` episodes the agent (agent.zip), its replay buffer and the
    episode count (search_state.json) are saved together; ``--resume`` drops the
    episodes.csv rows after the last checkpoint and continues from it, so the finished
    run holds exactly ``episodes`` rows with no duplicate.
    """
    from stable_baselines3.common.logger import configure

    from haq_rl.agent import ALGO_CLASSES, EpisodeRecorder, learn_episodes, make_agent

    run_dir = recorder.run_dir
    learning_episodes = config.episodes - 1
    agent_config = _agent_config(config, learning_episodes)
    state_path = run_dir / STATE_FILE
    done = int(read_json(state_path)["episodes_done"]) if state_path.is_file() else 0
    if recorder.count != done:  # rows written after the last checkpoint are redone
        recorder.log.truncate(done)
        recorder.reset_from_log()
    if done > 0:
        # The ALGO_CLASSES are HaqAlgorithmMixin + an SB3 off-policy class, whose load() they inherit.
        algo_class = cast("type[OffPolicyAlgorithm]", ALGO_CLASSES[agent_config.algo])
        model = algo_class.load(run_dir / AGENT_FILE, env=env, device=agent_config.device)
        model.load_replay_buffer(run_dir / REPLAY_FILE)
        logger.info("resumed %s after %d episodes", run_dir, done)
    else:
        model = make_agent(env, agent_config)
    model.set_logger(configure(str(run_dir / "sb3_logs"), _logger_formats()))

    def checkpoint() -> None:
        model.save(run_dir / AGENT_FILE)
        model.save_replay_buffer(run_dir / REPLAY_FILE)
        write_json_atomic(state_path, {"episodes_done": recorder.count})

    def sink(record: dict[str, Any]) -> None:
        if recorder.count >= learning_episodes:
            return
        recorder.record(record, "warm-up" if record.get("exploration") == "random" else "explore")
        if recorder.count % config.checkpoint_every == 0 or recorder.count == learning_episodes:
            checkpoint()

    remaining = learning_episodes - min(recorder.count, learning_episodes)
    if remaining > 0:
        learn_episodes(model, remaining, callback=EpisodeRecorder(sink=sink, keep=False))
    if recorder.count < config.episodes:
        recorder.record(_deterministic_rollout(env, model), "final")
        checkpoint()


def _agent_config(config: SearchConfig, learning_episodes: int) -> AgentConfig:
    """HAQ's agent settings, with the noise decay fitted to the run's length.

    Unless ``noise_decay`` is set explicitly, the exploration noise follows HAQ's
    600-episode schedule compressed into this run (:func:`run_length_decay`): with HAQ's
    literal 0.99 a 80-episode run would end still exploring at half its start std.
    """
    from haq_rl.agent import AgentConfig, run_length_decay

    agent_config = AgentConfig(**{"algo": config.method, "seed": config.seed, **config.agent})
    noisy_episodes = learning_episodes - agent_config.warmup_episodes
    if "noise_decay" in config.agent or noisy_episodes < 1:
        return agent_config
    decay = run_length_decay(noisy_episodes)
    logger.info("noise decay %.4f per episode over %d noisy episodes (HAQ's schedule)", decay, noisy_episodes)
    return dataclasses.replace(agent_config, noise_decay=decay)


def _deterministic_rollout(env: Any, model: Any) -> dict[str, Any]:
    """One episode of the learned actor without exploration noise."""
    observation, _ = env.reset()
    info: dict[str, Any] = {}
    terminated = False
    while not terminated:
        action, _ = model.predict(observation, deterministic=True)
        observation, _, terminated, _, info = env.step(action)
    return info


def _logger_formats() -> list[str]:
    """SB3 logs as CSV always, and as TensorBoard events when tensorboard is installed."""
    try:
        import tensorboard  # noqa: F401
    except ImportError:
        return ["csv"]
    return ["csv", "tensorboard"]


# --------------------------------------------------------------------------- progress
class _ProgressBar:
    def __init__(self, total: int, desc: str) -> None:
        self.total = total
        self.desc = desc
        self.bar: Any = None

    def start(self, done: int) -> None:
        from tqdm.auto import tqdm

        self.bar = tqdm(total=self.total, initial=done, desc=self.desc, unit="ep", dynamic_ncols=True)

    def update_info(self, info: dict[str, Any]) -> None:
        if self.bar is None:
            return
        self.bar.n = min(info["episode"], self.total)
        if "reward" in info:
            self.bar.set_postfix(best_reward=f"{info['reward']:.3f}", best_acc=f"{info['accuracy']:.2f}",
                                 cost_ratio=f"{info['cost_ratio']:.3f}", refresh=False)
        self.bar.refresh()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _progress_bar(config: SearchConfig) -> _ProgressBar | None:
    return _ProgressBar(config.episodes, f"search {config.method}") if config.progress else None
