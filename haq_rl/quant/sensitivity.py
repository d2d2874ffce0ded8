"""Per-layer quantization sensitivity: the expected loss increase of each (layer, bits).

Weights follow HAWQ-V2/V3 (Dong et al., NeurIPS 2020, "HAWQ-V2: Hessian Aware trace-Weighted
Quantization", Eq. 5-6; Yao et al., ICML 2021, "HAWQ-V3", Sec. 3.3): the second-order
estimate of the loss increase when layer ``l``'s weight ``W`` is quantized to ``b`` bits is

    Omega_w(l, b) = 1/2 * Tr(H_l) / n_l * ||Q_b(W) - W||^2

with ``H_l`` the Hessian of the loss with respect to the layer's ``n_l`` weights. The trace
comes from Hutchinson's estimator, ``Tr(H) = E[v^T H v]`` over Rademacher vectors ``v``
(Avron and Toledo, J. ACM 2011), each ``H v`` a double back-propagation.

Activations (our choice, not HAWQ's, which ties activation to weight bits): the same
second-order estimate with the loss Hessian with respect to the layer's input replaced by
its diagonal empirical Fisher, ``H_x ~ diag(g^2)`` with ``g`` the per-image gradient of the
loss with respect to that input (the Gauss-Newton/Fisher approximation of Optimal Brain
Damage, LeCun et al., NIPS 1989):

    Omega_a(l, b) = 1/2 * mean over images of sum_i g_i^2 * (Q_b(x)_i - x_i)^2

One backward pass gives ``g`` for every layer at once, so the activation part is cheap.
Both use the quantizers the search applies (:class:`~haq_rl.quant.PolicyApplier`'s cached
weights and calibrated clips), so the sensitivities describe exactly the policies scored.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import cast

import numpy as np
import torch
from torch import nn

from haq_rl.errors import ConfigError, check_integer
from haq_rl.quant.outputs import logits_of

from .applier import PolicyApplier

logger = logging.getLogger(__name__)

Batch = tuple[torch.Tensor, torch.Tensor]


@dataclass(frozen=True)
class LayerSensitivity:
    """Expected loss increase per layer and bit width (rows: layers, columns: ``bits``).

    ``weight[l, j]`` is :math:`\\Omega_w` of layer ``l`` at ``bits[j]``; ``activation`` likewise
    for the layer's input; ``hessian_trace`` is the average Hessian trace per weight.
    """

    layer_names: list[str]
    bits: tuple[int, ...]
    weight: np.ndarray
    activation: np.ndarray
    hessian_trace: np.ndarray

    def at(self, bits: int) -> int:
        """Column of ``bits`` in the arrays."""
        return self.bits.index(bits)


def hessian_traces(model: nn.Module, layers: Sequence[tuple[str, nn.Module]], batches: Sequence[Batch],
                   probes: int = 32, seed: int = 0, progress: bool = False) -> np.ndarray:
    """Hutchinson estimate of ``Tr(H_l) / n_l`` for every layer's weight (cross-entropy loss).

    The loss is the mean over all images of ``batches``; the model runs in eval mode
    (BatchNorm with its running statistics, as when a policy is scored). ``progress`` shows
    a bar over the probes (the long part: about 90 s for the default model on 2 cores).
    """
    from tqdm.auto import tqdm

    check_integer("probes", probes, 1)
    weights: list[torch.Tensor] = [cast(torch.Tensor, module.weight) for _, module in layers]
    generator = torch.Generator().manual_seed(seed)
    was_training = model.training
    model.eval()
    totals = [0.0] * len(weights)
    images = sum(int(labels.numel()) for _, labels in batches)
    bar = tqdm(total=len(batches) * probes, disable=not progress, unit="probe", dynamic_ncols=True,
               desc=f"computing layer sensitivities ({probes} probes x {len(layers)} layers)")
    try:
        for inputs, labels in batches:
            loss = nn.functional.cross_entropy(logits_of(model(inputs)), labels, reduction="sum") / images
            grads = torch.autograd.grad(loss, weights, create_graph=True)
            for probe in range(probes):
                vectors = [torch.randint(0, 2, w.shape, generator=generator).to(w) * 2 - 1 for w in weights]
                hvs = torch.autograd.grad(grads, weights, grad_outputs=vectors, retain_graph=probe < probes - 1)
                for i, (v, hv) in enumerate(zip(vectors, hvs, strict=True)):
                    totals[i] += float((v * hv).sum())
                bar.update()
    finally:
        bar.close()
        model.train(was_training)
    counts = np.array([w.numel() for w in weights], dtype=np.float64)
    return np.asarray(totals) / probes / counts


def input_fisher(model: nn.Module, layers: Sequence[tuple[str, nn.Module]],
                 batches: Sequence[Batch]) -> tuple[list[list[torch.Tensor]], list[list[torch.Tensor]]]:
    """Every layer's inputs and the per-image loss gradients with respect to them, per batch."""
    inputs_seen: list[list[torch.Tensor]] = [[] for _ in layers]
    grads_seen: list[list[torch.Tensor]] = [[] for _ in layers]
    captured: list[torch.Tensor | None] = [None] * len(layers)

    def hook_for(index: int):
        def hook(_module: nn.Module, args: tuple) -> None:
            x = args[0]
            if not x.requires_grad:  # the network input
                x = x.detach().requires_grad_(True)
                captured[index] = x
                return (x, *args[1:])  # type: ignore[return-value]
            x.retain_grad()
            captured[index] = x
            return None
        return hook

    handles = [module.register_forward_pre_hook(hook_for(i)) for i, (_, module) in enumerate(layers)]
    was_training = model.training
    model.eval()
    try:
        for inputs, labels in batches:
            model.zero_grad(set_to_none=True)
            # Summed loss: the gradient at image s is the gradient of image s's own loss.
            nn.functional.cross_entropy(logits_of(model(inputs)), labels, reduction="sum").backward()
            for i, x in enumerate(captured):
                if x is None or x.grad is None:
                    raise ConfigError(f"layer {layers[i][0]!r} was not called by forward(); cannot measure it")
                inputs_seen[i].append(x.detach())
                grads_seen[i].append(x.grad.detach())
            captured[:] = [None] * len(layers)
    finally:
        for handle in handles:
            handle.remove()
        model.zero_grad(set_to_none=True)
        model.train(was_training)
    return inputs_seen, grads_seen


def layer_sensitivity(applier: PolicyApplier, batches: Sequence[Batch], bits: Sequence[int],
                      probes: int = 32, seed: int = 0, progress: bool = False) -> LayerSensitivity:
    """Weight (Hutchinson) and activation (Fisher) sensitivities of every layer of ``applier``.

    ``applier`` supplies the quantizers: its cached quantized weights and calibrated
    activation clips, so ``Q_b`` is what the search evaluates. The model must be float
    (no policy applied).
    """
    if applier.policy is not None:
        raise ConfigError("layer_sensitivity needs the float model; restore() the applier first")
    model = applier.model
    layers = [(name, module) for name, module in model.named_modules() if name in set(applier.layer_names)]
    layers.sort(key=lambda item: applier.layer_names.index(item[0]))
    bits = tuple(int(b) for b in bits)
    traces = hessian_traces(model, layers, batches, probes=probes, seed=seed, progress=progress)
    inputs, grads = input_fisher(model, layers, batches)
    images = sum(int(labels.numel()) for _, labels in batches)
    weight = np.zeros((len(layers), len(bits)))
    activation = np.zeros((len(layers), len(bits)))
    with torch.no_grad():
        for i, (name, module) in enumerate(layers):
            for j, b in enumerate(bits):
                error = applier.quantized_weight(name, b) - cast(torch.Tensor, module.weight)
                weight[i, j] = 0.5 * traces[i] * float((error ** 2).sum())
                params = applier.act_params(name, b)
                total = 0.0
                for x, g in zip(inputs[i], grads[i], strict=True):
                    quantized = (x * params.inv_scale).round().clamp(params.qmin, params.qmax) * params.scale
                    total += float(((g * (quantized - x)) ** 2).sum())
                activation[i, j] = 0.5 * total / images
    logger.info("sensitivity of %d layers: mean Hessian trace per weight %.3g", len(layers), traces.mean())
    return LayerSensitivity(layer_names=[n for n, _ in layers], bits=bits, weight=weight,
                            activation=activation, hessian_trace=traces)
