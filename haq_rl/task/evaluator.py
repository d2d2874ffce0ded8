"""Accuracy of a quantized policy on the reward split, memoised per policy.

This is the expensive part of an episode. The model is quantized in place by a
:class:`~haq_rl.quant.PolicyApplier` (cached weights, no copy); the reward split is
held as a few pre-built tensors so evaluating costs little more than a float forward.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, cast

import numpy as np
import torch
from torch import nn

from haq_rl.quant import PolicyApplier, QuantConfig, QuantPolicy
from haq_rl.quant.outputs import logits_of
from haq_rl.training import reestimate_batchnorm

logger = logging.getLogger(__name__)

Batch = tuple[torch.Tensor, torch.Tensor]


@dataclass(frozen=True)
class PolicyScores:
    """What one evaluation measures on the reward split.

    ``accuracy``: top-1 in percent. ``kl``: mean KL divergence (nats per image) of the
    quantized model's predicted distribution from the float model's, ``KL(float || quant)``:
    0 for the float model, and unlike accuracy it keeps falling as a policy gets worse
    below chance, so it still ranks policies that all score at chance. ``origin``: where a
    tabulated reward came from (``"table"`` or ``"predictor"``, :mod:`haq_rl.supernet.tabulated`),
    else empty.
    """

    accuracy: float
    kl: float
    origin: str = ""


class ScoresSource(Protocol):
    """What :class:`~haq_rl.task.scoring.PolicyScorer` reads of an evaluator: the evaluator
    entry point of a reward source (:mod:`haq_rl.task.sources`) returns one, e.g. a
    :class:`PolicyEvaluator` or the predictor of :mod:`haq_rl.supernet.predictor`."""

    layer_names: list[str]
    float_accuracy: float
    device: torch.device
    evaluations: int
    cache_hits: int
    eval_seconds: float

    @property
    def parallel(self) -> bool:
        """Whether a pool evaluates for it now, so that :meth:`prefetch` of a batch pays."""

    def scores(self, w_bits: np.ndarray, a_bits: np.ndarray) -> PolicyScores: ...

    def prefetch(self, policies: Sequence[tuple[np.ndarray, np.ndarray]]) -> None: ...


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
        bn_batches: search-train input batches to re-estimate every BatchNorm's running
            statistics with each policy before it is scored (empty: keep the float
            model's statistics). Quantization shifts the pre-BN activations; the
            re-estimated statistics are the ones a fine-tune would start from.
        metric: ``metric(outputs, targets) -> float`` (higher is better) over the whole
            reward split, reported as ``accuracy``; None is top-1 in percent.
        applier: what switches ``model`` to a policy and back (``apply(policy)``,
            ``restore()``, ``layer_names``): None builds a
            :class:`~haq_rl.quant.PolicyApplier` (post-training quantization of the float
            weights); a :class:`~haq_rl.supernet.BitSupernet` scores on trained shared weights.
        reference: the float model whose predictions the KL is measured from (None:
            ``model`` itself, restored to float).

    Every evaluation measures both the accuracy (percent) and the KL divergence of the
    quantized model's predictions from the float model's on the reward split
    (:meth:`scores`); :meth:`accuracy` is the first of the two.
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
        bn_batches: Sequence[torch.Tensor] = (),
        metric: Callable[[torch.Tensor, torch.Tensor], float] | None = None,
        applier: Any = None,
        reference: nn.Module | None = None,
    ) -> None:
        self.device = torch.device(device)
        self.model = model.to(self.device).eval()
        self.layer_names = list(layer_names)
        self.reward_batches = [(x.to(self.device), y.to(self.device)) for x, y in reward_batches]
        self.calibration_inputs = [x.to(self.device) for x in calibration_inputs]
        self.quant_config = quant_config
        self.applier = applier if applier is not None else PolicyApplier(self.model, self.calibration_inputs,
                                                                         quant_config)
        self.finetune_batches = list(finetune_batches)
        self.finetune_steps = finetune_steps
        self.finetune_lr = finetune_lr
        self.bn_batches = [x.to(self.device) for x in bn_batches]
        self.metric = metric
        # The metric sees the whole reward split at once: its targets, concatenated once.
        self._reward_labels = (torch.cat([labels for _, labels in self.reward_batches]).cpu()
                               if self.reward_batches else torch.empty(0, dtype=torch.int64))
        self._memo: dict[bytes, PolicyScores] = {}
        #: Evaluates batches of policies elsewhere (``haq_rl.parallel``: worker processes or Ray
        #: actors, ``evaluate(list of (w, a)) -> list of PolicyScores``); None evaluates here.
        self.pool: Any = None
        self._prefetched: set[bytes] = set()  # in the memo by prefetch(), not yet asked for
        self.evaluations = 0
        self.cache_hits = 0
        self.eval_seconds = 0.0  # wall time spent evaluating (benchmarks report the share)
        # The float model's predicted distribution per reward batch, the reference of the KL.
        self._float_log_probs, self.float_accuracy = self._float_reference(
            self.model if reference is None else reference.to(self.device))
        self._float_probs = [log_probs.exp() for log_probs in self._float_log_probs]

    @property
    def parallel(self) -> bool:
        """Whether a pool is attached (:mod:`haq_rl.parallel`): then :meth:`prefetch` evaluates."""
        return self.pool is not None

    def policy(self, w_bits: np.ndarray, a_bits: np.ndarray) -> QuantPolicy:
        return QuantPolicy.from_arrays(self.layer_names, w_bits, a_bits)

    def accuracy(self, w_bits: np.ndarray, a_bits: np.ndarray) -> float:
        """Reward-split accuracy (percent) of the policy; repeated policies cost nothing."""
        return self.scores(w_bits, a_bits).accuracy

    def scores(self, w_bits: np.ndarray, a_bits: np.ndarray) -> PolicyScores:
        """Accuracy and KL divergence from the float model on the reward split (memoised)."""
        key = _policy_key(w_bits, a_bits)
        if key in self._memo:
            if key in self._prefetched:  # the first ask for a prefetched policy is no repeat
                self._prefetched.discard(key)
            else:
                self.cache_hits += 1
            return self._memo[key]
        if self.pool is not None:
            self.prefetch([(w_bits, a_bits)])
            self._prefetched.discard(key)
            return self._memo[key]
        started = time.perf_counter()
        policy = self.policy(w_bits, a_bits)
        if self.finetune_steps > 0:
            scores = self._finetuned_scores(policy)
        else:
            self.applier.apply(policy)
            try:
                with self._recalibrated_batchnorm():
                    scores = self._measure()
            finally:
                self.applier.restore()
        self.evaluations += 1
        self.eval_seconds += time.perf_counter() - started
        self._memo[key] = scores
        return scores

    def prefetch(self, policies: Sequence[tuple[np.ndarray, np.ndarray]]) -> None:
        """Evaluate the policies not yet memoised as one batch, through ``pool`` when set.

        The later :meth:`scores` calls for them are memo lookups, so a method keeps its
        one-policy-at-a-time logic (and its rows) while the batch runs in parallel.
        Without a pool this does nothing: the policies are evaluated when asked for.
        """
        if self.pool is None:
            return
        misses: dict[bytes, tuple[np.ndarray, np.ndarray]] = {}
        for w_bits, a_bits in policies:
            key = _policy_key(w_bits, a_bits)
            if key not in self._memo and key not in misses:
                misses[key] = (np.asarray(w_bits, np.int64), np.asarray(a_bits, np.int64))
        if not misses:
            return
        started = time.perf_counter()
        results = self.pool.evaluate(list(misses.values()))
        self.eval_seconds += time.perf_counter() - started  # wall time of the whole batch
        for key, scores in zip(misses, results, strict=True):
            self._memo[key] = scores
            self._prefetched.add(key)
        self.evaluations += len(misses)

    @torch.no_grad()
    def _float_reference(self, model: nn.Module) -> tuple[list[torch.Tensor], float]:
        """The float model's log-probabilities per reward batch and its accuracy (one pass)."""
        model.eval()
        log_probs = []
        correct = 0
        total = 0
        outputs = []
        for inputs, labels in self.reward_batches:
            logits = logits_of(model(inputs))
            correct += int((logits.argmax(dim=1) == labels).sum())
            total += int(labels.numel())
            log_probs.append(torch.log_softmax(logits.float(), dim=1))
            outputs.append(logits)
        return log_probs, self._score(outputs, correct, total)

    def _score(self, outputs: list[torch.Tensor], correct: int, total: int) -> float:
        """Top-1 percent (the default), or the task's metric over the whole reward split."""
        if self.metric is None:
            return 100.0 * correct / max(total, 1)
        return float(self.metric(torch.cat(outputs).float().cpu(), self._reward_labels))

    @torch.no_grad()
    def _measure(self) -> PolicyScores:
        """Accuracy and KL(float || model) of the model as it is now."""
        self.model.eval()
        correct = 0
        total = 0
        divergence = 0.0
        outputs = []
        for (inputs, labels), reference, probs in zip(
                self.reward_batches, self._float_log_probs, self._float_probs, strict=True):
            logits = logits_of(self.model(inputs))
            correct += int((logits.argmax(dim=1) == labels).sum())
            total += int(labels.numel())
            divergence += float((probs * (reference - torch.log_softmax(logits.float(), dim=1))).sum())
            outputs.append(logits)
        return PolicyScores(accuracy=self._score(outputs, correct, total), kl=divergence / max(total, 1))

    @contextlib.contextmanager
    def _recalibrated_batchnorm(self) -> Iterator[None]:
        """Re-estimate BatchNorm statistics on ``bn_batches`` for the applied policy; restore after."""
        norms = [m for m in self.model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
        if not self.bn_batches or not norms:
            yield
            return
        saved = [(m.momentum, cast(torch.Tensor, m.running_mean).clone(), cast(torch.Tensor, m.running_var).clone(),
                  cast(torch.Tensor, m.num_batches_tracked).clone()) for m in norms]
        try:
            reestimate_batchnorm(self.model, self.bn_batches)
            yield
        finally:
            for m, (momentum, mean, var, tracked) in zip(norms, saved, strict=True):
                m.momentum = momentum
                m.running_mean.copy_(mean)  # type: ignore[union-attr]
                m.running_var.copy_(var)  # type: ignore[union-attr]
                m.num_batches_tracked.copy_(tracked)  # type: ignore[union-attr]
            self.model.eval()

    def _finetuned_scores(self, policy: QuantPolicy) -> PolicyScores:
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
                    logits_of(self.model(inputs.to(self.device))), labels.to(self.device))
                loss.backward()
                optimizer.step()
            scores = self._measure()
        finally:
            remove_qat(self.model)
            self.model.load_state_dict(saved)
            self.model.eval()
        return scores


def _policy_key(w_bits: np.ndarray, a_bits: np.ndarray) -> bytes:
    """The memo key of a policy: its bits as bytes."""
    return np.asarray(w_bits, np.int8).tobytes() + np.asarray(a_bits, np.int8).tobytes()
