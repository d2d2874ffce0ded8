"""Test accuracy and costs of any policy, with or without a fine-tuned checkpoint."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from haq_rl.errors import ConfigError
from haq_rl.finetune.checkpoint import load_finetuned, load_quantized_model
from haq_rl.finetune.policies import policy_costs, ratio_or_none, uniform_policy
from haq_rl.finetune.policy_model import checkpoint_policy, model_at_policy
from haq_rl.finetune.qat import task_of, test_loader
from haq_rl.quant import QuantPolicy
from haq_rl.task.budget import REFERENCE_BITS
from haq_rl.task.label import model_label
from haq_rl.task.spec import TaskSpec
from haq_rl.task.task import Task

logger = logging.getLogger(__name__)

def evaluate_policy(spec: Task | TaskSpec | str | Path, policy: QuantPolicy | None,
                    checkpoint: str | Path | None = None, *, device: str | None = None) -> dict[str, Any]:
    """Test accuracy, latency, energy, size and cost ratio of ``policy`` on ``spec``'s task.

    Without ``checkpoint`` the pretrained float model is quantized with the policy
    (post-training, activation clips calibrated as in the search). With a fine-tuned
    ``checkpoint`` (finetuned.pt) its weights and clips are used; ``policy`` may then be
    None (the checkpoint's own policy) and otherwise must equal it.
    """
    from haq_rl.training import evaluate_accuracy

    task = task_of(spec, device)
    payload = None
    if checkpoint is not None:
        payload = load_finetuned(checkpoint)
        policy = checkpoint_policy(task, payload, str(checkpoint), policy)
    if policy is None:
        raise ConfigError("evaluate needs a policy or a fine-tuned checkpoint")
    policy = policy.validate(task.layer_names, task.quant_config.min_bits, task.quant_config.max_bits)
    if payload is not None:
        model = load_quantized_model(task, payload, source=str(checkpoint)).to(task.device)
    else:  # post-training, as documented (a fine-tune's 0 epochs measure another start)
        model = model_at_policy(task, policy, start="float")
    accuracy = evaluate_accuracy(model, test_loader(task), metric=task.metric)
    reference = policy_costs(task, uniform_policy(task, REFERENCE_BITS))
    costs = policy_costs(task, policy)
    return {
        "env": task.spec.id, "model": task.spec.model, "label": model_label(task.spec),
        "dataset": task.spec.dataset, "hardware": task.spec.hardware,
        "objective": task.spec.objective, "budget": task.spec.budget,
        "checkpoint": str(checkpoint) if checkpoint is not None else None,
        "finetuned": payload is not None, "split": "test", "accuracy": accuracy,
        **costs,
        "latency_ratio": ratio_or_none(costs["latency_ms"], reference["latency_ms"]),
        "energy_ratio": ratio_or_none(costs["energy_uj"], reference["energy_uj"]),
        "size_ratio": ratio_or_none(costs["size_bytes"], reference["size_bytes"]),
        "mean_w_bits": float(policy.w_bits.mean()), "mean_a_bits": float(policy.a_bits.mean()),
        "w_bits": policy.w_bits.tolist(), "a_bits": policy.a_bits.tolist(),
    }
