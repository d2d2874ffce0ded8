"""PolicyApplier: switch a model between quantization policies in place, cheaply.

This is the hot path of the search (one policy per episode). Nothing is copied:

* weights: the quantized tensor of each (layer, w_bits) is computed once and cached;
  applying a policy points ``module.weight.data`` at the cached tensor (restore points it
  back at the original float storage, so the float model comes back bit-identical and
  the Parameter objects never change);
* activations: one forward pre-hook per layer calls the native
  ``torch.fake_quantize_per_tensor_affine`` with a precomputed scale; switching policy
  only swaps the hook's parameters, which come from a (layer, a_bits) cache filled
  lazily from the calibration histogram.

The applier is for evaluation. Train with :func:`haq_rl.quant.prepare_qat` instead: an
optimizer step while a policy is applied would write into the cached quantized weights.
If the float weights change (e.g. after training), call :meth:`PolicyApplier.refresh`.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from itertools import islice
from types import TracebackType
from typing import cast

import torch
from torch import nn

from haq_rl.errors import PolicyError

from .calibration import InputStats, clip_range, collect_input_stats
from .config import QuantConfig
from .kmeans import kmeans_weight
from .layers import quantizable_modules
from .policy import QuantPolicy
from .quantizers import ActQuantParams, fake_quantize_weight

log = logging.getLogger(__name__)


class _ActHook:
    """Forward pre-hook fake-quantizing a layer's input; parameters swapped per policy.

    Why two code paths: on CPU, the native ``fake_quantize_per_tensor_affine`` kernel
    (which also writes the STE mask) measured ~5x slower than the four vectorised
    element-wise ops below, which alone made a quantized evaluation ~1.5x the float
    forward. When no gradient is needed on CPU the hook therefore computes the same
    formula as the native kernel, ``clamp(nearbyint(x * (1/s)), qmin, qmax) * s`` in
    float32, bit-identical to it (tested); with autograd or on accelerators it calls the
    native op.
    """

    __slots__ = ("scale", "inv_scale", "qmin", "qmax")

    def __init__(self, params: ActQuantParams) -> None:
        self.set(params)

    def set(self, params: ActQuantParams) -> None:
        self.scale, self.qmin, self.qmax = params.scale, params.qmin, params.qmax
        self.inv_scale = params.inv_scale

    def __call__(self, _module: nn.Module, args: tuple) -> tuple:
        x = args[0]
        if x.is_cpu and x.dtype == torch.float32 and not (
                torch.is_grad_enabled() and x.requires_grad):
            x = x.mul(self.inv_scale).round_().clamp_(self.qmin, self.qmax).mul_(self.scale)
        else:
            x = torch.fake_quantize_per_tensor_affine(x, self.scale, 0, self.qmin, self.qmax)
        return (x, *args[1:])


class PolicyApplier:
    """Apply :class:`QuantPolicy` objects to ``model`` in place (no copies, cached tensors).

    Arguments:
        model: the float model (on its final device; put it in eval mode to evaluate).
        calibration_inputs: input batches (tensors or ``(x, y)`` tuples) from the
            search-train split; the first ``config.calibration_batches`` are used.
        config: quantization settings (granularity, calibration method, bit range, method).
        layers: ``(name, module)`` pairs to quantize; default every Conv2d/Linear in order.

    Usable as a context manager: the float model is restored on exit.
    """

    def __init__(self, model: nn.Module, calibration_inputs: Iterable[object],
                 config: QuantConfig | None = None,
                 layers: Sequence[tuple[str, nn.Module]] | None = None) -> None:
        self.model = model
        self.config = config or QuantConfig()
        self._layers: dict[str, nn.Module] = dict(layers or quantizable_modules(model))
        # References to the float storages (not copies): restore re-points at them.
        self._float: dict[str, torch.Tensor] = {n: cast(torch.Tensor, m.weight).data for n, m in self._layers.items()}
        # islice: a DataLoader may be passed; only the first batches are drawn from it.
        batches = list(islice(calibration_inputs, self.config.calibration_batches))
        self._stats: dict[str, InputStats] = collect_input_stats(model, self._layers, batches)
        self._wcache: dict[tuple[str, int], torch.Tensor] = {}
        self._acache: dict[tuple[str, int], ActQuantParams] = {}
        self._hooks: dict[str, _ActHook] = {}
        self._handles: list[torch.utils.hooks.RemovableHandle] = []
        self._policy: QuantPolicy | None = None

    # ----------------------------------------------------------------- views
    @property
    def layer_names(self) -> list[str]:
        """Quantizable layer names in model order (the order policies are validated to)."""
        return list(self._layers)

    @property
    def policy(self) -> QuantPolicy | None:
        """The policy currently applied, or None when the model is float."""
        return self._policy

    @property
    def input_stats(self) -> dict[str, InputStats]:
        """Calibration statistics of each layer's input."""
        return dict(self._stats)

    # ----------------------------------------------------------------- caches
    def quantized_weight(self, name: str, bits: int) -> torch.Tensor:
        """The (cached) quantized weight of layer ``name`` at ``bits`` bits."""
        key = (name, bits)
        cached = self._wcache.get(key)
        if cached is None:
            w = self._float[name]
            with torch.no_grad():
                if self.config.weight_method == "kmeans":
                    cached, _ = kmeans_weight(w, bits, self.config.kmeans_iters)
                else:
                    cached = fake_quantize_weight(
                        w, bits, per_channel=self.config.weight_granularity == "per_channel")
            self._wcache[key] = cached
        return cached

    def act_params(self, name: str, bits: int) -> ActQuantParams:
        """The (cached) activation fake-quant parameters of layer ``name``'s input."""
        key = (name, bits)
        params = self._acache.get(key)
        if params is None:
            stats = self._stats[name]
            clip = clip_range(stats, bits, self.config.act_calibration, self.config.percentile)
            try:
                params = ActQuantParams.from_clip(clip, bits, stats.signed)
            except PolicyError as exc:
                raise PolicyError(f"layer {name!r}: {exc}") from None
            self._acache[key] = params
        return params

    def clear_cache(self) -> None:
        """Drop cached quantized weights and activation parameters (memory, or new config)."""
        self._wcache.clear()
        self._acache.clear()

    def refresh(self, calibration_inputs: Iterable[object] | None = None) -> None:
        """Forget caches after the float weights changed; recalibrate if inputs are given."""
        applied = self._policy
        self.restore()
        self._float = {n: cast(torch.Tensor, m.weight).data for n, m in self._layers.items()}
        self.clear_cache()
        if calibration_inputs is not None:
            batches = list(islice(calibration_inputs, self.config.calibration_batches))
            self._stats = collect_input_stats(self.model, self._layers, batches)
        if applied is not None:
            self.apply(applied)

    # ----------------------------------------------------------------- switching
    def apply(self, policy: QuantPolicy) -> QuantPolicy:
        """Quantize the model in place according to ``policy``; returns the validated policy.

        Raises PolicyError / UnknownNameError (before touching the model) when the policy
        does not fit this model or the configured bit range.
        """
        policy = policy.validate(self.layer_names, self.config.min_bits, self.config.max_bits)
        # Resolve everything first so a failure leaves the model as it was.
        weights = [self.quantized_weight(n, w) for n, (w, _) in policy.items()]
        acts = [self.act_params(n, a) for n, (_, a) in policy.items()]
        if not self._handles:
            for (name, module), params in zip(self._layers.items(), acts, strict=True):
                hook = _ActHook(params)
                self._hooks[name] = hook
                self._handles.append(module.register_forward_pre_hook(hook))
        else:
            for hook, params in zip(self._hooks.values(), acts, strict=True):
                hook.set(params)
        for module, weight in zip(self._layers.values(), weights, strict=True):
            module.weight.data = weight
        self._policy = policy
        return policy

    def restore(self) -> None:
        """Put the exact float weights back and remove the activation quantizers."""
        for name, module in self._layers.items():
            module.weight.data = self._float[name]
        for handle in self._handles:
            handle.remove()
        self._handles.clear()
        self._hooks.clear()
        self._policy = None

    def __enter__(self) -> PolicyApplier:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.restore()

    def __repr__(self) -> str:
        state = "float" if self._policy is None else repr(self._policy)
        return f"PolicyApplier({len(self._layers)} layers, {state})"
