"""Accuracy of a quantized policy on the reward split, memoised per policy.

This is the expensive part of an episode. The model is quantized in place by a
:class:`~haq_rl.quant.PolicyApplier` (cached weights, no copy); the reward split is
held as a few pre-built tensors so evaluating costs little more than a float forward.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from haq_rl.quant import PolicyApplier, QuantConfig, QuantPolicy

logger = logging.getLogger(__name__)

Batch = tuple[torch.Tensor, torch.Tensor]


class PolicyEvaluator:
    """Evaluates policies (arrays of weight and activation bits) on fixed batches.

    Arguments:
        model: the float model; it is modified in place while a policy is applied and
            restored exactly afterwards.
        layer_names: quantizable layers, in the order of the bit arrays.
        reward_batches: (inputs, labels) batches of the reward split.
        calibration_inputs: input batches of the search-train split for activation ranges.
        quant_config: quantizer settings.
        finetune_batches / finetune_steps / finetune_lr: HAQ's optional short fine-tune
            of each policy before it is evaluated (off when ``finetune_steps`` is 0).
    """

    def __init__(
        self,
        model: nn.Module,
        layer_names: Sequence[str],
        reward_batches: Sequence[Batch],
        calibration_inputs: Sequence[torch.Tensor],
        quant_config: QuantConfig,
        device: torch.device | str = "cpu",
        finetune_batches: Sequence[Batch] = (),
        finetune_steps: int = 0,
        finetune_lr: float = 1e-3,
    ) -> None:
        self.device = torch.device(device)
        self.model = model.to(self.device).eval()
        self.layer_names = list(layer_names)
        self.reward_batches = [(x.to(self.device), y.to(self.device)) for x, y in reward_batches]
        self.calibration_inputs = [x.to(self.device) for x in calibration_inputs]
        self.quant_config = quant_config
        self.applier = PolicyApplier(self.model, self.calibration_inputs, quant_config)
        self.finetune_batches = list(finetune_batches)
        self.finetune_steps = finetune_steps
        self.finetune_lr = finetune_lr
        self._memo: dict[bytes, float] = {}
        self.evaluations = 0
        self.cache_hits = 0
        self.eval_seconds = 0.0  # wall time spent evaluating (benchmarks report the share)
        self.float_accuracy = self._accuracy()

    def policy(self, w_bits: np.ndarray, a_bits: np.ndarray) -> QuantPolicy:
        return QuantPolicy.from_arrays(self.layer_names, w_bits, a_bits)

    def accuracy(self, w_bits: np.ndarray, a_bits: np.ndarray) -> float:
        """Reward-split accuracy (percent) of the policy; repeated policies cost nothing."""
        key = np.asarray(w_bits, np.int8).tobytes() + np.asarray(a_bits, np.int8).tobytes()
        if key in self._memo:
            self.cache_hits += 1
            return self._memo[key]
        started = time.perf_counter()
        policy = self.policy(w_bits, a_bits)
        if self.finetune_steps > 0:
            accuracy = self._finetuned_accuracy(policy)
        else:
            self.applier.apply(policy)
            try:
                accuracy = self._accuracy()
            finally:
                self.applier.restore()
        self.evaluations += 1
        self.eval_seconds += time.perf_counter() - started
        self._memo[key] = accuracy
        return accuracy

    @torch.no_grad()
    def _accuracy(self) -> float:
        self.model.eval()
        correct = 0
        total = 0
        for inputs, labels in self.reward_batches:
            correct += int((self.model(inputs).argmax(dim=1) == labels).sum())
            total += int(labels.numel())
        return 100.0 * correct / max(total, 1)

    def _finetuned_accuracy(self, policy: QuantPolicy) -> float:
        """HAQ's per-episode fine-tune: QAT for a few steps, evaluate, restore the float weights."""
        from haq_rl.quant import prepare_qat, remove_qat

        saved = {name: value.detach().clone() for name, value in self.model.state_dict().items()}
        prepare_qat(self.model, policy, self.quant_config, self.calibration_inputs)
        optimizer = torch.optim.SGD(
            [p for p in self.model.parameters() if p.requires_grad], lr=self.finetune_lr, momentum=0.9)
        self.model.train()
        try:
            for step in range(self.finetune_steps):
                inputs, labels = self.finetune_batches[step % len(self.finetune_batches)]
                optimizer.zero_grad(set_to_none=True)
                loss = nn.functional.cross_entropy(
                    self.model(inputs.to(self.device)), labels.to(self.device))
                loss.backward()
                optimizer.step()
            accuracy = self._accuracy()
        finally:
            remove_qat(self.model)
            self.model.load_state_dict(saved)
            self.model.eval()
        return accuracy
