"""Quantization-aware training (fine-tuning a chosen policy).

``prepare_qat`` turns a float model, in place, into a fake-quantized one:

* weights get a ``torch.nn.utils.parametrize`` parametrization: the float weight stays
  the trainable latent tensor, every forward uses its fake-quantized value (max-abs
  scale recomputed each step; the native op's straight-through estimator passes
  gradients to the latent weight). With ``weight_method="kmeans"`` the parametrization
  is "mean of my cluster", so the shared values move by the average gradient of their
  cluster while the assignments stay fixed (Deep Compression's centroid fine-tuning);
* each layer's input gets an :class:`ActFakeQuant` submodule (``<layer>.act_quant``)
  called from a forward pre-hook; with ``learnable_clip=True`` its clip ``alpha`` is a
  parameter trained PACT-style (clip, then quantize; gradient flows to alpha through
  the clip for inputs beyond it).

With ``quantizer="lsq"`` (the default) both use the learned step size quantizers of
:mod:`haq_rl.quant.lsq` instead, initialised from the same max-abs scales and calibrated
clips, so training starts from exactly the policy the search scored.

BatchNorm stays unfused unless the model was folded first (:mod:`haq_rl.quant.fold`).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from itertools import islice
from typing import Any, cast

import torch
from torch import nn
from torch.nn.utils import parametrize

from haq_rl.errors import PolicyError

from .calibration import clip_range, collect_input_stats
from .config import QuantConfig
from .kmeans import kmeans_1d
from .layers import quantizable_modules
from .lsq import LSQActQuantizer, LSQWeightQuantizer
from .policy import QuantPolicy
from .quantizers import act_qrange, act_scale, fake_quantize_weight, weight_scales

log = logging.getLogger(__name__)

_REGISTRY_ATTR = "_haq_qat_layers"
_EXPORT_VERSION = 1
#: QAT quantizers: ``lsq`` (learned steps, LSQ+ zero point on signed inputs; the default),
#: ``max_abs`` (max-abs weight scales recomputed every step, fixed calibrated clips) and
#: ``pact`` (max-abs weights, PACT-trained clips).
QAT_QUANTIZERS = ("lsq", "max_abs", "pact")


class WeightFakeQuant(nn.Module):
    """Parametrization: latent float weight -> fake-quantized weight (STE)."""

    def __init__(self, bits: int, per_channel: bool) -> None:
        super().__init__()
        self.bits = bits
        self.per_channel = per_channel

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        return fake_quantize_weight(weight, self.bits, self.per_channel)


class KMeansWeight(nn.Module):
    """Parametrization: latent weight -> mean of each weight's (fixed) cluster."""

    assignments: torch.Tensor  # registered buffer

    def __init__(self, assignments: torch.Tensor, bits: int) -> None:
        super().__init__()
        self.bits = bits
        self.register_buffer("assignments", assignments.reshape(-1).clone())
        self.num_clusters = int(self.assignments.max()) + 1

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        flat = weight.reshape(-1)
        sums = torch.zeros(self.num_clusters, dtype=flat.dtype,
                           device=flat.device).index_add(0, self.assignments, flat)
        counts = torch.bincount(self.assignments, minlength=self.num_clusters).clamp_min(1)
        return (sums / counts.to(flat.dtype))[self.assignments].reshape(weight.shape)


class ActFakeQuant(nn.Module):
    """Per-tensor activation fake quantizer with a fixed or learnable (PACT) clip."""

    def __init__(self, clip: float, bits: int, signed: bool, learnable: bool = False) -> None:
        super().__init__()
        self.bits = bits
        self.signed = signed
        self.learnable = learnable
        self.qmin, self.qmax = act_qrange(bits, signed)
        self._levels = 2 ** (bits - 1) - 1 if signed else 2 ** bits - 1
        value = torch.tensor(float(max(clip, 1e-8)))
        if learnable:
            self.alpha = nn.Parameter(value)
        else:
            self.register_buffer("alpha", value)

    @property
    def scale(self) -> float:
        return act_scale(float(self.alpha.detach()), self.bits, self.signed)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.learnable:
            return torch.fake_quantize_per_tensor_affine(x, self.scale, 0, self.qmin, self.qmax)
        alpha = self.alpha.abs().clamp_min(1e-8)
        # PACT: the clip is differentiable w.r.t. alpha; quantization inside is STE.
        x = torch.minimum(x, alpha)
        x = torch.maximum(x, -alpha) if self.signed else x
        scale = (alpha / self._levels).detach().reshape(1)
        zero = torch.zeros(1, dtype=torch.int32, device=x.device)
        return torch.fake_quantize_per_tensor_affine(x, scale, zero, self.qmin, self.qmax)

    def extra_repr(self) -> str:
        return f"bits={self.bits}, signed={self.signed}, learnable={self.learnable}"


def act_pre_hook(module: nn.Module, args: tuple) -> tuple:
    """Forward pre-hook: the layer's input through its ``act_quant`` submodule."""
    return (cast(nn.Module, module.act_quant)(args[0]), *args[1:])


def prepare_qat(model: nn.Module, policy: QuantPolicy, config: QuantConfig | None,
                calibration_inputs: Iterable[object], learnable_clip: bool = False, *,
                quantizer: str | None = None, zero_point: bool = True) -> nn.Module:
    """Make ``model`` fake-quantized per ``policy`` for training; returns the same object.

    ``quantizer`` is one of :data:`QAT_QUANTIZERS` (default ``lsq``, or ``pact`` when
    ``learnable_clip``). Every quantizer starts from the search's quantization: max-abs
    weight scales per channel and activation clips calibrated on ``calibration_inputs``
    (float model, ``config.act_calibration``), so the prepared model computes what the
    search scored. ``zero_point`` (LSQ only) learns an LSQ+ zero point on signed inputs.
    k-means weights (``config.weight_method="kmeans"``) keep their cluster means. Raises
    PolicyError if the model is already prepared or the policy does not fit it.
    """
    config = config or QuantConfig()
    quantizer = quantizer or ("pact" if learnable_clip else "lsq")
    if quantizer not in QAT_QUANTIZERS:
        raise PolicyError(f"QAT quantizer {quantizer!r} must be one of {', '.join(QAT_QUANTIZERS)}")
    if getattr(model, _REGISTRY_ATTR, None):
        raise PolicyError("model is already prepared for QAT (call remove_qat first)")
    layers = dict(quantizable_modules(model))
    policy = policy.validate(list(layers), config.min_bits, config.max_bits)
    batches = list(islice(calibration_inputs, config.calibration_batches))
    stats = collect_input_stats(model, layers, batches, histograms=config.act_calibration != "max")
    per_channel = config.weight_granularity == "per_channel"
    registry: dict[str, dict[str, Any]] = {}
    try:
        for name, (w_bits, a_bits) in policy.items():
            module = layers[name]
            st = stats[name]
            clip = clip_range(st, a_bits, config.act_calibration, config.percentile)
            try:
                act: nn.Module = (
                    LSQActQuantizer.from_clip(clip, a_bits, st.signed, learn_zero_point=zero_point)
                    if quantizer == "lsq" else
                    ActFakeQuant(clip, a_bits, st.signed, learnable=quantizer == "pact"))
            except PolicyError as exc:
                raise PolicyError(f"layer {name!r}: {exc}") from None
            if config.weight_method == "kmeans":
                _, assign = kmeans_1d(module.weight, w_bits, config.kmeans_iters)
                param: nn.Module = KMeansWeight(assign, w_bits)
            elif quantizer == "lsq":
                param = LSQWeightQuantizer.from_weight(module.weight, w_bits, per_channel)
            else:
                param = WeightFakeQuant(w_bits, per_channel)
            parametrize.register_parametrization(module, "weight", param.to(module.weight.device))
            module.add_module("act_quant", act.to(module.weight.device))
            handle = module.register_forward_pre_hook(act_pre_hook)
            registry[name] = {"module": module, "handle": handle, "w_bits": w_bits,
                              "a_bits": a_bits, "method": config.weight_method,
                              "per_channel": per_channel, "quantizer": quantizer}
    except BaseException:
        setattr(model, _REGISTRY_ATTR, registry)
        remove_qat(model)
        raise
    setattr(model, _REGISTRY_ATTR, registry)
    log.info("prepared %d layers for QAT (mean w_bits %.2f, mean a_bits %.2f)", len(registry),
             float(policy.w_bits.mean()), float(policy.a_bits.mean()))
    return model


def _registry(model: nn.Module) -> dict[str, dict[str, Any]]:
    registry = getattr(model, _REGISTRY_ATTR, None)
    if not registry:
        raise PolicyError("model is not prepared for QAT (call prepare_qat first)")
    return registry


@torch.no_grad()
def export_qat(model: nn.Module) -> dict[str, Any]:
    """Float ``state_dict`` (original keys) holding the quantized weights, plus quant params.

    Returns ``{"format_version": 1, "state_dict": {...}, "quant": {layer: {"w_bits",
    "a_bits", "weight_method", "quantizer", "w_scale" (list or None), "a_signed", "a_clip",
    "a_scale", "a_zero_point"}}}``. ``w_scale`` and ``a_scale`` are the learned steps of an
    LSQ model (the max-abs scale and calibrated clip's step otherwise); the activation grid
    is ``(q - a_zero_point) * a_scale`` for integers ``q`` of the signed or unsigned range.
    The state_dict loads into a plain (unprepared) instance of the same model.
    """
    registry = _registry(model)
    prefixes = {name: (name + "." if name else "") for name in registry}
    state: dict[str, torch.Tensor] = {}
    for key, value in model.state_dict().items():
        layer = next((n for n, p in prefixes.items() if key.startswith(p)), None)
        if layer is not None:
            rest = key[len(prefixes[layer]):]
            if rest.startswith("act_quant.") or rest.startswith("parametrizations.weight."):
                continue  # quantizer state: reported under "quant", not a model tensor
        state[key] = value.detach().clone()
    quant: dict[str, dict[str, Any]] = {}
    for name, entry in registry.items():
        module = entry["module"]
        weight = module.weight.detach().clone()  # the parametrized (quantized) value
        state[prefixes[name] + "weight"] = weight
        act = module.act_quant
        param = module.parametrizations.weight[0]
        w_scale = None
        if isinstance(param, LSQWeightQuantizer):
            w_scale = param.steps().tolist()
        elif entry["method"] == "linear" and entry["w_bits"] >= 2:
            w_scale = weight_scales(module.parametrizations.weight.original, entry["w_bits"],
                                    entry["per_channel"]).reshape(-1).tolist()
        if isinstance(act, LSQActQuantizer):
            zero = act.integer_zero_point
            a_clip = act.scale * (act.qmax - zero)
        else:
            zero, a_clip = 0, float(act.alpha.abs())
        quant[name] = {"w_bits": entry["w_bits"], "a_bits": entry["a_bits"],
                       "weight_method": entry["method"], "quantizer": entry.get("quantizer", "max_abs"),
                       "w_scale": w_scale, "a_signed": act.signed, "a_clip": a_clip,
                       "a_scale": act.scale, "a_zero_point": zero}
    return {"format_version": _EXPORT_VERSION, "state_dict": state, "quant": quant}


def frozen_act_quantizer(params: dict[str, Any]) -> LSQActQuantizer:
    """The inference-time activation quantizer of one layer of :func:`export_qat`'s ``quant``.

    Old (max-abs / PACT) and LSQ checkpoints alike: a fixed step ``a_scale`` and the
    integer zero point (0 where the checkpoint predates zero points).
    """
    return LSQActQuantizer(int(params["a_bits"]), bool(params["a_signed"]), float(params["a_scale"]),
                           zero_point=float(params.get("a_zero_point", 0)), learn_step=False)


def remove_qat(model: nn.Module, bake_weights: bool = False) -> nn.Module:
    """Undo :func:`prepare_qat` in place; returns the model.

    ``bake_weights=False`` keeps the trained latent float weights; ``True`` leaves the
    quantized values in ``weight``.
    """
    registry = getattr(model, _REGISTRY_ATTR, None) or {}
    for entry in registry.values():
        module = entry["module"]
        entry["handle"].remove()
        if "act_quant" in module._modules:
            del module._modules["act_quant"]
        if parametrize.is_parametrized(module, "weight"):
            parametrize.remove_parametrizations(module, "weight", leave_parametrized=bake_weights)
    if hasattr(model, _REGISTRY_ATTR):
        delattr(model, _REGISTRY_ATTR)
    return model
