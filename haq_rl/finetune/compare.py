"""The fair comparison of a run: the searched policy and the uniform baselines, same fine-tune."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from haq_rl import __version__
from haq_rl.fileio import remove_stale_temps, write_json_atomic
from haq_rl.finetune.checkpoint import save_finetuned
from haq_rl.finetune.config import METRICS_FORMAT_VERSION, FinetuneConfig, FinetuneResult
from haq_rl.finetune.policies import (
    largest_uniform_within_budget,
    policy_costs,
    ratio_or_none,
    uniform_policy,
)
from haq_rl.finetune.qat import finetune_policy, resolved_start, test_loader
from haq_rl.quant import QuantPolicy
from haq_rl.run.episodes import read_episode_rows
from haq_rl.run.layout import EPISODES_FILE, FINETUNED_FILE, METRICS_FILE
from haq_rl.run.lock import run_lock
from haq_rl.run.resolve import policy_source, policy_spec, task_for
from haq_rl.task.budget import REFERENCE_BITS, is_within_budget
from haq_rl.task.label import model_label
from haq_rl.task.spec import TaskSpec
from haq_rl.task.task import Task

logger = logging.getLogger(__name__)

#: ``(task, name -> policy) -> name -> measured fields``: how the caller times policies end to
#: end (``haq_rl.export.end_to_end``, which sits above this package); the fields go into the
#: rows of metrics.json. It returns nothing for a task it cannot time, else "float" among the rest.
EndToEndTimer = Callable[[Task, dict[str, QuantPolicy]], dict[str, dict[str, Any]]]
#: How many of the search's best policies within the budget are timed end to end beside the rows.
TOP_POLICIES = 5


def finetune_run(run_dir_or_policy_json: str | Path, config: FinetuneConfig | None = None, *,
                 env: str | Path | TaskSpec | None = None, out: str | Path | None = None,
                 weights: str | None = None, model: str | None = None, task: Task | None = None,
                 progress: bool = True, end_to_end: EndToEndTimer | None = None) -> dict[str, Any]:
    """Fine-tune a run's best policy (and the baselines), write finetuned.pt and metrics.json.

    ``run_dir_or_policy_json`` is a search run directory (its best_policy.json and
    config.json are used) or a policy JSON (its env comes from a config.json next to it,
    or its ``env_id``); ``env`` overrides either, ``model`` (a zoo name or
    ``package.module:factory``: a policy of your own model names it but is never trusted
    to) replaces the spec's model and ``weights`` (a state_dict file) its trained weights. ``task`` is the :class:`Task` of a run that was
    searched with one built from Python objects (``Task.from_model``); it is used under the
    run's budget. ``end_to_end`` (a measured target only) times every row's policy and the
    search's :data:`TOP_POLICIES` best within the budget as whole exported models: the rows gain
    ``measured_latency_ms`` and the other fields it returns, metrics.json an ``end_to_end`` entry. Files go to the run directory, next to
    the policy JSON, or to ``out``. Returns the metrics dict written to metrics.json::

        {"format_version": 1, "env": {...TaskSpec...}, "finetune": {"epochs", "lr", "seed", ...},
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
    policy_path, out_dir, run_config = policy_source(run_dir_or_policy_json, out)
    with run_lock(out_dir):  # one writer per run directory
        remove_stale_temps(out_dir)  # what a killed fine-tune left
        searched = QuantPolicy.from_json(policy_path)
        spec = policy_spec(searched, env, run_config, device=config.device, model=model, weights=weights)
        given, task = task, task_for(spec, task, budget=spec.budget)
        if given is not None:
            spec = task.spec
        # Fail on a policy of another model before any training.
        searched = searched.validate(task.layer_names, task.quant_config.min_bits, task.quant_config.max_bits)

        reference = policy_costs(task, uniform_policy(task, REFERENCE_BITS))
        float_accuracy = evaluate_accuracy(task.model, test_loader(task), metric=task.metric)
        rows: list[dict[str, Any]] = [_float_row(task, float_accuracy)]

        candidates: list[tuple[str, QuantPolicy]] = []
        if config.compare:
            candidates.append(("uniform 8/8", uniform_policy(task, REFERENCE_BITS)))
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
            "label": model_label(spec),  # what was fine-tuned, for people (the env id or the user's model)
            "finetune": {**config.to_dict(), "epoch_images": config.images_per_epoch(
                spec.finetune_epoch_images, len(task.splits.search_train))},
            # "accuracy_before" of each row is the starting model's: with the supernet start,
            # the retraining-free accuracy (0 epochs) beside the fine-tuned one.
            "start": resolved_start(task, config),
            "accuracy_split": "test",
            "finetune_split": "search_train",
            "float_row": "pretrained accuracy, not fine-tuned",
            "policy": str(policy_path),
            "checkpoint": FINETUNED_FILE,
            "rows": rows,
            "searched_vs_uniform4": _margin(by_name.get("searched"), by_name.get("uniform 4/4")),
            "wall_time_s": time.perf_counter() - started,
        }
        if end_to_end is not None:
            metrics["end_to_end"] = _time_end_to_end(end_to_end, task, dict(candidates), rows,
                                                     policy_path.parent / EPISODES_FILE, reference)
        write_json_atomic(out_dir / METRICS_FILE, metrics)
        logger.info("wrote %s and %s", checkpoint, out_dir / METRICS_FILE)
        return metrics


def _float_row(task: Task, accuracy: float) -> dict[str, Any]:
    weights = sum(layer.weight_count for layer in task.layers)
    return {"name": "float", "w_bits": None, "a_bits": None, "finetuned": False,
            "accuracy_before": accuracy, "accuracy": accuracy,
            # The cost models stop at 8 bits: only the fp32 weight size is known.
            "latency_ms": None, "energy_uj": None, "size_bytes": float(4 * weights), "bops": None,
            "cost_ratio": None, "within_budget": None, "latency_ratio": None,
            "energy_ratio": None, "size_ratio": None, "wall_time_s": 0.0}


def _policy_row(task: Task, name: str, policy: QuantPolicy, result: FinetuneResult,
                reference: dict[str, Any]) -> dict[str, Any]:
    costs = policy_costs(task, policy)
    return {
        "name": name, "w_bits": policy.w_bits.tolist(), "a_bits": policy.a_bits.tolist(),
        "finetuned": True, "accuracy_before": result.accuracy_before, "accuracy": result.accuracy,
        **costs,
        "latency_ratio": ratio_or_none(costs["latency_ms"], reference["latency_ms"]),
        "energy_ratio": ratio_or_none(costs["energy_uj"], reference["energy_uj"]),
        "size_ratio": ratio_or_none(costs["size_bytes"], reference["size_bytes"]),
        "wall_time_s": result.wall_time_s,
    }


def _margin(searched: dict[str, Any] | None, uniform4: dict[str, Any] | None) -> dict[str, Any] | None:
    if searched is None or uniform4 is None:
        return None
    return {"accuracy_margin": searched["accuracy"] - uniform4["accuracy"],
            "latency_ratio": ratio_or_none(searched["latency_ms"], uniform4["latency_ms"]),
            "cost_ratio": ratio_or_none(searched["cost_ratio"], uniform4["cost_ratio"])}


def _time_end_to_end(timer: EndToEndTimer, task: Task, candidates: dict[str, QuantPolicy],
                     rows: list[dict[str, Any]], episodes: Path, reference: dict[str, Any]) -> dict[str, Any] | None:
    """Time the rows' policies and the search's best ones; the rows gain the measured fields
    (None: the timer cannot time this task)."""
    top = _top_policies(task, episodes)
    measured = timer(task, {**candidates, **{name: policy for name, (policy, _) in top.items()}})
    if not measured:
        return None
    for row in rows:
        row.update(measured.get(row["name"], {}))
    top_rows = []
    for name, (policy, episode) in top.items():
        costs = policy_costs(task, policy)
        top_rows.append({"name": name, "episode": episode, "w_bits": policy.w_bits.tolist(),
                         "a_bits": policy.a_bits.tolist(), **costs,
                         "latency_ratio": ratio_or_none(costs["latency_ms"], reference["latency_ms"]),
                         **measured[name]})
    return {"top_policies": top_rows, "float": measured["float"]}


def _top_policies(task: Task, episodes: Path) -> dict[str, tuple[QuantPolicy, int]]:
    """The :data:`TOP_POLICIES` distinct policies of highest reward within the budget in a run's
    episodes.csv (none without one): name -> (policy, episode)."""
    if not episodes.is_file():
        return {}
    names = task.layer_names
    top: dict[str, tuple[QuantPolicy, int]] = {}
    seen: set[QuantPolicy] = set()
    rows = [row for row in read_episode_rows(episodes) if f"w:{names[0]}" in row]
    for row in sorted(rows, key=lambda r: -float(r["reward"])):
        if len(top) == TOP_POLICIES:
            break
        policy = QuantPolicy.from_arrays(names, np.array([int(row[f"w:{n}"]) for n in names]),
                                         np.array([int(row[f"a:{n}"]) for n in names]))
        if policy in seen or not is_within_budget(float(row["cost_ratio"]), task.spec.budget):
            continue
        seen.add(policy)
        top[f"search top {len(top) + 1} (episode {row['episode']})"] = (policy, int(row["episode"]))
    return top
