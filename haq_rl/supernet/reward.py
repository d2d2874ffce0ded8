"""The supernet as a reward source (its row: :mod:`haq_rl.task.sources`): every method scores
policies on it through the one scorer.

``reward_source: supernet`` in a task spec: a policy's reward is the supernet's accuracy or
KL (``reward_metric``) at that policy on ``reward_val``, after its BatchNorm statistics are
re-estimated for the policy on a few ``search_train`` batches (weights shared across widths
see differently scaled activations at every width, so the running statistics of training,
an average over many configurations, fit none of them). The KL is measured from the
task's own float model, as with post-training quantization, so rewards of both sources
mean the same thing.
"""

from __future__ import annotations

import logging
from typing import Any

import torch
from torch import nn

from haq_rl.supernet.config import SupernetConfig
from haq_rl.supernet.train import TrainedSupernet
from haq_rl.task.evaluator import PolicyEvaluator
from haq_rl.task.sources import reward_source_entry
from haq_rl.task.task import BN_SEED_OFFSET

logger = logging.getLogger(__name__)

#: Search-train batches (of ``reward_batch_size``) that re-estimate BatchNorm per policy
#: when the spec's ``bn_recalibration`` is 0 (measured in bench/bench_fidelity.py).
SUPERNET_BN_BATCHES = 2


def supernet_config(task: Any) -> SupernetConfig:
    """The training recipe of a task's supernet: the spec's ``reward_options`` when its reward
    source reads them as a SupernetConfig, else the defaults (``hawq --option
    sensitivity=supernet`` or ``haq-rl supernet`` on a post-training task)."""
    options = reward_source_entry(task.spec.reward_source).options_of(task.spec.reward_options)
    return options if isinstance(options, SupernetConfig) else SupernetConfig()


def policy_bn_inputs(task: Any) -> list[torch.Tensor]:
    """The search-train batches that re-estimate BatchNorm for each policy on the supernet."""
    spec = task.spec
    count = spec.bn_recalibration or SUPERNET_BN_BATCHES
    return [x for x, _ in task.search_train_batches(spec.reward_batch_size, spec.split_seed + BN_SEED_OFFSET, count)]


def supernet_evaluator(task: Any, trained: TrainedSupernet) -> PolicyEvaluator:
    """A :class:`PolicyEvaluator` whose policies switch the supernet's widths."""
    model = trained.supernet.model
    bn_inputs = evaluation_layout(model, policy_bn_inputs(task))
    inputs, labels = zip(*task.reward_batches(), strict=True)
    reward_batches = list(zip(evaluation_layout(model, list(inputs)), labels, strict=True))
    return PolicyEvaluator(model, trained.supernet.layer_names, reward_batches=reward_batches,
                           calibration_inputs=[], quant_config=task.quant_config, device=task.device,
                           bn_batches=bn_inputs, metric=task.metric, applier=trained.supernet,
                           reference=task.model)


def evaluation_layout(model: nn.Module, inputs: list[torch.Tensor]) -> list[torch.Tensor]:
    """Convolutional supernets evaluate channels-last (depthwise convolutions run ~3x faster
    so on the CPU, see training.py): ``model`` is converted in place and ``inputs`` returned
    so. One home for it: the fine-tune's start re-estimates BatchNorm in the same layout,
    so it reproduces the reward's statistics to the bit."""
    if not any(isinstance(m, nn.Conv2d) for m in model.modules()):
        return inputs
    model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    return [x.contiguous(memory_format=torch.channels_last) if x.dim() == 4 else x for x in inputs]
