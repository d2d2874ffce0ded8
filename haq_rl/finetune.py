"""Quantization-aware fine-tuning of a chosen policy and the final evaluation.

The last stage of HAQ: the policy found by the search is applied to the float model
with fake quantizers (:func:`haq_rl.quant.prepare_qat`), the model is trained for a
short budget on the ``search_train`` split (SGD momentum, cosine schedule), and the
result is measured on the ``test`` split, which neither the search (reward split) nor
the fine-tune ever saw.

:func:`finetune_run` does this for a run directory (or a bare policy JSON) and, by
default, gives the baselines the same treatment, so the comparison is fair: float
(pretrained accuracy, not fine-tuned), uniform 8/8, uniform 4/4, the largest uniform
policy within the budget and the searched policy, each fine-tuned with the same
:class:`FinetuneConfig`. It writes

    finetuned.pt   the searched policy's fine-tuned model (loads with
                   ``torch.load(weights_only=True)``): format_version, state_dict (float
                   tensors holding the quantized weights), quant_params, policy, meta
    metrics.json   the comparison table (see :func:`finetune_run`)

:func:`evaluate_policy` measures any policy (with or without a fine-tuned checkpoint).
"""

from __future__ import annotations

import copy
import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch
from torch import nn

from haq_rl import __version__
from haq_rl.checkpoint_io import atomic_torch_save, read_torch_file
from haq_rl.env import DEFAULT_ENV_ID, EnvSpec, resolve_spec
from haq_rl.env.factory import Task, load_task
from haq_rl.errors import CheckpointError, ConfigError, MissingPathError, PolicyError
from haq_rl.quant import ActFakeQuant, QuantPolicy, export_qat, prepare_qat, quantizable_modules
from haq_rl.run_dir import BEST_POLICY_FILE, CONFIG_FILE, read_json, write_json_atomic
from haq_rl.task import budget as budget_rules
from haq_rl.task.budget import is_within_budget, pinned_layers, reference_cost, uniform_bits

logger = logging.getLogger(__name__)

FINETUNED_FILE = "finetuned.pt"
METRICS_FILE = "metrics.json"
CHECKPOINT_FORMAT_VERSION = 1
METRICS_FORMAT_VERSION = 1


@dataclass(frozen=True)
class FinetuneConfig:
    """The fine-tune budget, the same for the searched policy and every baseline.

    The defaults are measured on the default env (MobileNetV2 on mnist5k, see the
    docs/user_guide.md): one epoch over the 3500 ``search_train`` images at lr 5e-3 recovers most of
    the accuracy that 4-bit quantization loses, and the whole comparison (4-5 fine-tunes)
    takes a few minutes on two CPU cores.

    Arguments:
        epochs: passes over ``search_train`` (>= 1).
        lr: peak SGD learning rate of the cosine schedule (> 0).
        batch_size: training batch size (>= 2: BatchNorm needs two samples).
        seed: drives the batch order and everything else random in the fine-tune.
        device: cpu, cuda, cuda:N or auto.
        compare: also fine-tune the uniform baselines (False: only the searched policy).
        learnable_clip: train the activation clips PACT-style instead of keeping the
            calibrated ones.
    """

    epochs: int = 1
    lr: float = 5e-3
    batch_size: int = 64
    seed: int = 0
    device: str = "cpu"
    compare: bool = True
    learnable_clip: bool = False

    def __post_init__(self) -> None:
        if isinstance(self.epochs, bool) or not isinstance(self.epochs, int) or self.epochs < 1:
            raise ConfigError(f"epochs={self.epochs!r} must be an integer >= 1")
        if isinstance(self.lr, bool) or not isinstance(self.lr, int | float) or not 0 < self.lr < math.inf:
            raise ConfigError(f"lr={self.lr!r} must be a finite number > 0")
        if isinstance(self.batch_size, bool) or not isinstance(self.batch_size, int) or self.batch_size < 2:
            raise ConfigError(f"batch_size={self.batch_size!r} must be an integer >= 2")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise ConfigError(f"seed={self.seed!r} must be an integer >= 0")
        device = str(self.device)
        if device not in ("cpu", "cuda", "auto") and not device.startswith("cuda:"):
            raise ConfigError(f"device={self.device!r} must be cpu, cuda, cuda:N or auto")

    def to_dict(self) -> dict[str, Any]:
        """The settings as a JSON-ready dict (metrics.json's ``finetune`` entry)."""
        return {"epochs": self.epochs, "lr": float(self.lr), "batch_size": self.batch_size,
                "seed": self.seed, "device": str(self.device), "compare": self.compare,
                "learnable_clip": self.learnable_clip}


@dataclass
class FinetuneResult:
    """One fine-tuned policy.

    ``model`` is the fake-quantized model (still prepared for QAT, eval mode);
    ``accuracy`` and ``accuracy_before`` are test-split accuracies (percent) after and
    before fine-tuning; ``export`` is :func:`haq_rl.quant.export_qat`'s output.
    """

    model: nn.Module
    accuracy: float
    export: dict[str, Any]
    accuracy_before: float = float("nan")
    policy: QuantPolicy | None = None
    losses: list[float] = field(default_factory=list)
    wall_time_s: float = 0.0


# --------------------------------------------------------------------------- helpers
def _as_task(task_or_spec: Task | EnvSpec | str | Path, device: str | None = None) -> Task:
    if isinstance(task_or_spec, Task):
        return task_or_spec
    spec = resolve_spec(task_or_spec)
    if device is not None and device != spec.device:
        spec = spec.replace(device=device)
    return load_task(spec)


def _test_loader(task: Task) -> torch.utils.data.DataLoader:
    from haq_rl.data import make_loader

    return make_loader(task.splits.test, batch_size=256)


def _pinned(task: Task) -> np.ndarray:
    return pinned_layers(len(task.specs), task.spec.pin_first_last)


def uniform_policy(task: Task, bits: int) -> QuantPolicy:
    """Uniform ``bits``/``bits`` with the env's conventions (what the search's uniform baseline scores).

    Layers the env pins (first and last) stay at 8 bits; a weight-only objective (size)
    keeps activations at 8 bits. ``bits=8`` is therefore all 8/8.
    """
    w, a = uniform_bits(_pinned(task), task.spec.weight_only, bits)
    return QuantPolicy.from_arrays(task.layer_names, w, a, name=f"uniform {bits}/{bits}")


def _finite_or_none(value: float) -> float | None:
    # JSON has no NaN: profiles without an energy model report null instead.
    return float(value) if math.isfinite(value) else None


def policy_costs(task: Task, policy: QuantPolicy) -> dict[str, Any]:
    """Latency, energy, size, BOPs and the objective's cost ratio of ``policy`` (cost table)."""
    w = policy.w_bits
    a = policy.a_bits
    index = (np.arange(len(w)), w - 1, a - 1)
    table = task.cost_table
    cost = float(table.policy_cost(w, a, task.spec.objective))
    ratio = cost / reference_cost(table, task.spec.objective)
    return {
        "latency_ms": _finite_or_none(float(table.latency_ms[index].sum())),
        "energy_uj": _finite_or_none(float(table.energy_uj[index].sum())),
        "size_bytes": _finite_or_none(float(table.size_bytes[index].sum())),
        "bops": _finite_or_none(float(table.bops[index].sum())),
        "cost_ratio": ratio,
        "within_budget": is_within_budget(ratio, task.spec.budget),
    }


def largest_uniform_within_budget(task: Task) -> int | None:
    """The most bits B whose uniform B/B policy meets the task's budget (None if none does)."""
    spec = task.spec
    return budget_rules.largest_uniform_within_budget(
        task.cost_table, spec.objective, spec.budget, _pinned(task), spec.weight_only, spec.min_bits, spec.max_bits)


# --------------------------------------------------------------------------- fine-tune
def finetune_policy(task_or_spec: Task | EnvSpec | str | Path, policy: QuantPolicy,
                    config: FinetuneConfig | None = None, progress: bool = True,
                    desc: str = "finetune") -> FinetuneResult:
    """QAT of the task's pretrained float model with ``policy``; test accuracy before and after.

    The task's model is not modified (a copy is fine-tuned). Raises PolicyError (or
    UnknownNameError for a misspelt layer) when the policy does not fit the model.
    """
    from haq_rl.data import make_loader
    from haq_rl.seeding import seed_everything
    from haq_rl.training import evaluate_accuracy, resolve_device, train_epochs

    config = config or FinetuneConfig()
    task = _as_task(task_or_spec, config.device)
    policy = policy.validate(task.layer_names, task.quant_config.min_bits, task.quant_config.max_bits)
    device = resolve_device(config.device)
    started = time.perf_counter()
    seed_everything(config.seed)
    model = copy.deepcopy(task.model).to(device)
    # Calibrate the activation clips on the float model exactly as the search did.
    prepare_qat(model, policy, task.quant_config, [x.to(device) for x in task.calibration_inputs()],
                learnable_clip=config.learnable_clip)
    test_loader = _test_loader(task)
    before = evaluate_accuracy(model, test_loader)
    loader = make_loader(task.splits.search_train, batch_size=config.batch_size, shuffle=True,
                         seed=config.seed)
    losses = train_epochs(model, loader, epochs=config.epochs, lr=config.lr, device=device,
                          progress=progress, desc=desc)
    model.eval()
    after = evaluate_accuracy(model, test_loader)
    export = export_qat(model)
    wall = time.perf_counter() - started
    logger.info("%s: test accuracy %.2f%% -> %.2f%% in %.1f s", desc, before, after, wall)
    return FinetuneResult(model=model, accuracy=after, export=export, accuracy_before=before,
                          policy=policy, losses=losses, wall_time_s=wall)


# --------------------------------------------------------------------------- inputs
def resolve_policy_source(path: str | Path, out: str | Path | None = None) -> tuple[Path, Path, Path | None]:
    """``(policy_json, output_dir, run_config_or_None)`` of a run directory or a policy JSON.

    Raises MissingPathError when the path, or a run directory's best_policy.json, is missing.
    """
    path = Path(path).expanduser()
    if path.is_dir():
        policy_path = path / BEST_POLICY_FILE
        if not policy_path.is_file():
            raise MissingPathError(f"{path} has no {BEST_POLICY_FILE} (is it a finished search run directory?)")
    elif path.is_file():
        policy_path = path
    else:
        raise MissingPathError(f"no run directory or policy JSON at {path}")
    config_path = policy_path.parent / CONFIG_FILE
    out_dir = Path(out).expanduser() if out is not None else policy_path.parent
    return policy_path, out_dir, config_path if config_path.is_file() else None


def resolve_env(policy: QuantPolicy, env: str | Path | EnvSpec | None = None,
                run_config: Path | None = None, device: str | None = None) -> EnvSpec:
    """The env a policy belongs to: ``env`` if given, else the run's config.json, else its env_id.

    Without ``env``, the budget is the one the policy was searched at (its ``budget``
    metadata), so baselines are compared within the policy's own budget, not the env's
    default.
    """
    if env is not None:
        spec = resolve_spec(env)
    elif run_config is not None:
        data = read_json(run_config)
        if not isinstance(data, dict) or not isinstance(data.get("env"), dict):
            raise ConfigError(f"{run_config} has no 'env' settings (not a haq-rl run config)")
        # The run's own spec, with the search's overrides (budget, hardware, ...).
        spec = EnvSpec.from_dict(data["env"], source=str(run_config))
    elif policy.metadata.get("env_id"):
        spec = resolve_spec(str(policy.metadata["env_id"]))
    else:
        logger.warning("policy names no env_id; using the default env %s", DEFAULT_ENV_ID)
        spec = resolve_spec(DEFAULT_ENV_ID)
    searched_budget = policy.metadata.get("budget")
    if env is None and isinstance(searched_budget, int | float) and float(searched_budget) != spec.budget:
        spec = spec.replace(budget=float(searched_budget))
    return spec.replace(device=device) if device is not None and device != spec.device else spec


# --------------------------------------------------------------------------- run
def finetune_run(run_dir_or_policy_json: str | Path, config: FinetuneConfig | None = None, *,
                 env: str | Path | EnvSpec | None = None, out: str | Path | None = None,
                 progress: bool = True) -> dict[str, Any]:
    """Fine-tune a run's best policy (and the baselines), write finetuned.pt and metrics.json.

    ``run_dir_or_policy_json`` is a search run directory (its best_policy.json and
    config.json are used) or a policy JSON (its env comes from a config.json next to it,
    or its ``env_id``); ``env`` overrides either. Files go to the run directory, next to
    the policy JSON, or to ``out``. Returns the metrics dict written to metrics.json::

        {"format_version": 1, "env": {...EnvSpec...}, "finetune": {"epochs", "lr", "seed", ...},
         "accuracy_split": "test", "finetune_split": "search_train",
         "float_row": "pretrained accuracy, not fine-tuned",
         "rows": [{"name", "w_bits", "a_bits", "finetuned", "accuracy_before", "accuracy",
                   "latency_ms", "energy_uj", "size_bytes", "bops", "cost_ratio",
                   "within_budget", "latency_ratio", "energy_ratio", "size_ratio",
                   "wall_time_s"}, ...],
         "searched_vs_uniform4": {"accuracy_margin", "latency_ratio", "cost_ratio"} or null,
         "checkpoint": "finetuned.pt", ...}

    Rows are float, uniform 8/8, uniform 4/4, the largest uniform within the budget (when
    it is neither 8/8 nor 4/4) and searched; with ``config.compare=False`` only float and
    searched. Ratios are to uniform 8/8's cost-table value (also without ``compare``).
    """
    from haq_rl.training import evaluate_accuracy

    config = config or FinetuneConfig()
    started = time.perf_counter()
    policy_path, out_dir, run_config = resolve_policy_source(run_dir_or_policy_json, out)
    searched = QuantPolicy.from_json(policy_path)
    spec = resolve_env(searched, env, run_config, device=config.device)
    task = load_task(spec)
    # Fail on a policy of another model before any training.
    searched = searched.validate(task.layer_names, task.quant_config.min_bits, task.quant_config.max_bits)

    reference = policy_costs(task, uniform_policy(task, 8))
    float_accuracy = evaluate_accuracy(task.model, _test_loader(task))
    rows: list[dict[str, Any]] = [_float_row(task, float_accuracy)]

    candidates: list[tuple[str, QuantPolicy]] = []
    if config.compare:
        candidates.append(("uniform 8/8", uniform_policy(task, 8)))
        if spec.min_bits <= 4 <= spec.max_bits:
            candidates.append(("uniform 4/4", uniform_policy(task, 4)))
        largest = largest_uniform_within_budget(task)
        if largest is not None and largest not in (4, 8):
            candidates.append((f"uniform {largest}/{largest} (largest within budget)",
                               uniform_policy(task, largest)))
    candidates.append(("searched", searched))

    done: dict[QuantPolicy, FinetuneResult] = {}
    searched_result: FinetuneResult | None = None
    for name, policy in candidates:
        result = done.get(policy)
        if result is None:  # same policy, same seed: same result (e.g. a uniform search)
            result = finetune_policy(task, policy, config, progress=progress, desc=f"finetune {name}")
            done[policy] = result
        else:
            logger.info("%s equals an already fine-tuned policy; reusing its result", name)
        rows.append(_policy_row(task, name, policy, result, reference))
        if name == "searched":
            searched_result = result
    assert searched_result is not None

    out_dir.mkdir(parents=True, exist_ok=True)
    checkpoint = out_dir / FINETUNED_FILE
    save_finetuned(checkpoint, searched_result, task, config, policy_source=str(policy_path))
    by_name = {row["name"]: row for row in rows}
    metrics = {
        "format_version": METRICS_FORMAT_VERSION,
        "haq_rl_version": __version__,
        "env": spec.to_dict(),
        "finetune": config.to_dict(),
        "accuracy_split": "test",
        "finetune_split": "search_train",
        "float_row": "pretrained accuracy, not fine-tuned",
        "policy": str(policy_path),
        "checkpoint": FINETUNED_FILE,
        "rows": rows,
        "searched_vs_uniform4": _margin(by_name.get("searched"), by_name.get("uniform 4/4")),
        "wall_time_s": time.perf_counter() - started,
    }
    write_json_atomic(out_dir / METRICS_FILE, metrics)
    logger.info("wrote %s and %s", checkpoint, out_dir / METRICS_FILE)
    return metrics


def _float_row(task: Task, accuracy: float) -> dict[str, Any]:
    weights = sum(layer.weight_count for layer in task.specs)
    return {"name": "float", "w_bits": None, "a_bits": None, "finetuned": False,
            "accuracy_before": accuracy, "accuracy": accuracy,
            # The cost models stop at 8 bits: only the fp32 weight size is known.
            "latency_ms": None, "energy_uj": None, "size_bytes": float(4 * weights), "bops": None,
            "cost_ratio": None, "within_budget": None, "latency_ratio": None,
            "energy_ratio": None, "size_ratio": None, "wall_time_s": 0.0}


def _ratio(value: float | None, reference: float | None) -> float | None:
    if value is None or reference is None or reference == 0:
        return None
    return value / reference


def _policy_row(task: Task, name: str, policy: QuantPolicy, result: FinetuneResult,
                reference: dict[str, Any]) -> dict[str, Any]:
    costs = policy_costs(task, policy)
    return {
        "name": name, "w_bits": policy.w_bits.tolist(), "a_bits": policy.a_bits.tolist(),
        "finetuned": True, "accuracy_before": result.accuracy_before, "accuracy": result.accuracy,
        **costs,
        "latency_ratio": _ratio(costs["latency_ms"], reference["latency_ms"]),
        "energy_ratio": _ratio(costs["energy_uj"], reference["energy_uj"]),
        "size_ratio": _ratio(costs["size_bytes"], reference["size_bytes"]),
        "wall_time_s": result.wall_time_s,
    }


def _margin(searched: dict[str, Any] | None, uniform4: dict[str, Any] | None) -> dict[str, Any] | None:
    if searched is None or uniform4 is None:
        return None
    return {"accuracy_margin": searched["accuracy"] - uniform4["accuracy"],
            "latency_ratio": _ratio(searched["latency_ms"], uniform4["latency_ms"]),
            "cost_ratio": _ratio(searched["cost_ratio"], uniform4["cost_ratio"])}


# --------------------------------------------------------------------------- checkpoint
def save_finetuned(path: str | Path, result: FinetuneResult, task: Task, config: FinetuneConfig,
                   **extra_meta: Any) -> Path:
    """Write a fine-tuned checkpoint that loads with ``torch.load(weights_only=True)``.

    Only tensors, numbers, strings, lists and dicts go in, so no pickled class is needed.
    """
    path = Path(path)
    assert result.policy is not None
    meta: dict[str, Any] = {
        # What load_checkpoint-style code needs to rebuild the float model.
        **{key: task.meta[key] for key in ("model", "num_classes", "in_channels", "input_size",
                                           "width_mult", "dataset") if key in task.meta},
        "env": task.spec.to_dict(),
        "finetune": config.to_dict(),
        "accuracy": float(result.accuracy),
        "accuracy_before": float(result.accuracy_before),
        "accuracy_split": "test",
        "learnable_clip": bool(config.learnable_clip),
        "haq_rl_version": __version__,
        **extra_meta,
    }
    state_dict = {k: v.detach().cpu().contiguous() for k, v in result.export["state_dict"].items()}
    payload = {
        "format_version": CHECKPOINT_FORMAT_VERSION,
        "state_dict": state_dict,
        "quant_params": result.export["quant"],
        "policy": result.policy.to_dict(),
        "meta": meta,
    }
    atomic_torch_save(payload, path)
    return path


def load_finetuned(path: str | Path) -> dict[str, Any]:
    """Read and check a finetuned.pt (``weights_only=True``); raises CheckpointError."""
    payload = read_torch_file(path, {"format_version", "state_dict", "quant_params", "policy", "meta"},
                              "haq-rl fine-tuned checkpoint")
    if payload["format_version"] != CHECKPOINT_FORMAT_VERSION:
        raise CheckpointError(f"{path} has format_version {payload['format_version']!r}; "
                              f"this haq-rl reads {CHECKPOINT_FORMAT_VERSION}")
    return payload


def load_quantized_model(task: Task, payload: dict[str, Any], source: str = "checkpoint") -> nn.Module:
    """The fine-tuned model of a checkpoint, ready for inference.

    Weights are the exported quantized values, loaded as they are (not re-quantized);
    every quantizable layer gets back its activation quantizer with the trained clip, so
    the forward is the one that was measured after fine-tuning.
    """
    model = copy.deepcopy(task.model)
    try:
        model.load_state_dict(payload["state_dict"], strict=True)
    except (RuntimeError, TypeError, AttributeError) as error:
        first_line = str(error).strip().splitlines()[0]
        raise CheckpointError(f"{source} does not fit model {task.spec.model!r}: {first_line}") from None
    quant = payload["quant_params"]
    learnable = bool(payload["meta"].get("learnable_clip", False))
    for name, module in quantizable_modules(model):
        params = quant.get(name)
        if params is None:
            raise CheckpointError(f"{source} has no quantizer parameters for layer {name!r}")
        act = ActFakeQuant(float(params["a_clip"]), int(params["a_bits"]), bool(params["a_signed"]),
                           learnable=learnable)
        module.add_module("act_quant", act)
        module.register_forward_pre_hook(_act_quant_hook)
    return model.eval()


def _act_quant_hook(module: nn.Module, args: tuple) -> tuple:
    return (cast(ActFakeQuant, module.act_quant)(args[0]), *args[1:])


# --------------------------------------------------------------------------- evaluate
def evaluate_policy(spec: Task | EnvSpec | str | Path, policy: QuantPolicy | None,
                    checkpoint: str | Path | None = None, *, device: str | None = None) -> dict[str, Any]:
    """Test accuracy, latency, energy, size and cost ratio of ``policy`` on ``spec``'s task.

    Without ``checkpoint`` the pretrained float model is quantized with the policy
    (post-training, activation clips calibrated as in the search). With a fine-tuned
    ``checkpoint`` (finetuned.pt) its weights and clips are used; ``policy`` may then be
    None (the checkpoint's own policy) and otherwise must equal it.
    """
    from haq_rl.training import evaluate_accuracy

    task = _as_task(spec, device)
    payload = None
    if checkpoint is not None:
        payload = load_finetuned(checkpoint)
        try:
            saved = QuantPolicy.from_dict(payload["policy"])
        except PolicyError as error:
            raise CheckpointError(f"{checkpoint}: unreadable policy: {error}") from None
        saved_model = payload["meta"].get("model")
        if saved_model is not None and saved_model != task.spec.model:
            raise CheckpointError(f"{checkpoint} holds a fine-tuned {saved_model!r}, but env "
                                  f"{task.spec.id} uses {task.spec.model!r} (pass --env)")
        if policy is not None and policy.validate(saved.layer_names, 1, 8) != saved:
            raise PolicyError(f"{checkpoint} was fine-tuned with a different policy than the one given")
        policy = saved
    if policy is None:
        raise ConfigError("evaluate needs a policy or a fine-tuned checkpoint")
    policy = policy.validate(task.layer_names, task.quant_config.min_bits, task.quant_config.max_bits)
    if payload is not None:
        model = load_quantized_model(task, payload, source=str(checkpoint)).to(task.device)
    else:
        model = copy.deepcopy(task.model).to(task.device)
        prepare_qat(model, policy, task.quant_config,
                    [x.to(task.device) for x in task.calibration_inputs()])
    accuracy = evaluate_accuracy(model, _test_loader(task))
    reference = policy_costs(task, uniform_policy(task, 8))
    costs = policy_costs(task, policy)
    return {
        "env": task.spec.id, "model": task.spec.model, "hardware": task.spec.hardware,
        "objective": task.spec.objective, "budget": task.spec.budget,
        "checkpoint": str(checkpoint) if checkpoint is not None else None,
        "finetuned": payload is not None, "split": "test", "accuracy": accuracy,
        **costs,
        "latency_ratio": _ratio(costs["latency_ms"], reference["latency_ms"]),
        "energy_ratio": _ratio(costs["energy_uj"], reference["energy_uj"]),
        "size_ratio": _ratio(costs["size_bytes"], reference["size_bytes"]),
        "mean_w_bits": float(policy.w_bits.mean()), "mean_a_bits": float(policy.a_bits.mean()),
        "w_bits": policy.w_bits.tolist(), "a_bits": policy.a_bits.tolist(),
    }


__all__ = [
    "FINETUNED_FILE",
    "METRICS_FILE",
    "FinetuneConfig",
    "FinetuneResult",
    "evaluate_policy",
    "finetune_policy",
    "finetune_run",
    "largest_uniform_within_budget",
    "load_finetuned",
    "load_quantized_model",
    "policy_costs",
    "resolve_env",
    "resolve_policy_source",
    "save_finetuned",
    "uniform_policy",
]
