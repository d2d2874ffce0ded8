"""The bit-width supernet: one float model whose layers hold a quantizer per bit width.

Every quantizable layer keeps one latent float weight (shared by every precision, as in
single-path one-shot search, Guo et al. 2020, and Once-QAT's weight sharing) and one
learned-step quantizer per bit width it may take (:mod:`haq_rl.quant.lsq`: per-channel
weight steps, per-tensor activation step with an LSQ+ zero point on signed inputs). A
policy switches each layer to its (w, a) pair; no weight is copied, so switching costs
nothing and a whole evaluation is one forward.

The quantizers are the ones QAT trains and the export reads (``LSQWeightQuantizer`` and
``LSQActQuantizer``), so :meth:`BitSupernet.quantized_model` hands a fine-tune exactly
the model the supernet scored: the shared weights and that policy's steps.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import cast

import numpy as np
import torch
from torch import nn
from torch.nn.utils import parametrize

from haq_rl.errors import PolicyError
from haq_rl.quant.calibration import InputStats
from haq_rl.quant.config import QuantConfig
from haq_rl.quant.layers import quantizable_modules
from haq_rl.quant.lsq import LSQActQuantizer, LSQWeightQuantizer
from haq_rl.quant.policy import QuantPolicy
from haq_rl.quant.qat import act_pre_hook
from haq_rl.quant.switchable import SwitchableActivation, SwitchableWeight, install_width_quantizers


class BitSupernet:
    """A model whose quantizable layers switch between bit widths (weights shared).

    Arguments:
        model: the float model to hold; it is modified in place (pass a copy).
        w_choices / a_choices: per quantizable layer (module order), the weight and
            activation widths it may take (pinned layers: only 8).
        stats: each layer's calibrated input statistics (the activation steps' start).
        config: the task's quantizer settings (calibration method, granularity).
        zero_point: learn an LSQ+ zero point for signed inputs.

    The object follows :class:`~haq_rl.quant.PolicyApplier`'s contract (``apply(policy)``
    / ``restore()``, ``layer_names``), so a :class:`~haq_rl.task.PolicyEvaluator` scores
    policies on it unchanged.
    """

    def __init__(self, model: nn.Module, w_choices: Sequence[Sequence[int]], a_choices: Sequence[Sequence[int]],
                 stats: dict[str, InputStats], config: QuantConfig, zero_point: bool = True) -> None:
        layers = quantizable_modules(model)
        if not len(layers) == len(w_choices) == len(a_choices):
            raise PolicyError(f"the model has {len(layers)} quantizable layers, the bit choices describe "
                              f"{len(w_choices)}")
        self.model = model
        self.config = config
        self.w_choices = [tuple(int(b) for b in bits) for bits in w_choices]
        self.a_choices = [tuple(int(b) for b in bits) for bits in a_choices]
        installed = install_width_quantizers(layers, self.w_choices, self.a_choices, stats, config, zero_point)
        self._weights: dict[str, SwitchableWeight] = {name: weight for name, weight, _ in installed}
        self._acts: dict[str, SwitchableActivation] = {name: act for name, _, act in installed}
        self._policy: QuantPolicy | None = None

    # ----------------------------------------------------------------- views
    @property
    def layer_names(self) -> list[str]:
        return list(self._weights)

    @property
    def policy(self) -> QuantPolicy | None:
        """The policy now applied (None: float)."""
        return self._policy

    def largest(self) -> tuple[np.ndarray, np.ndarray]:
        """Every layer at its widest choice (the sandwich rule's top)."""
        return (np.array([max(c) for c in self.w_choices]), np.array([max(c) for c in self.a_choices]))

    def smallest(self) -> tuple[np.ndarray, np.ndarray]:
        """Every layer at its narrowest choice (the sandwich rule's bottom)."""
        return (np.array([min(c) for c in self.w_choices]), np.array([min(c) for c in self.a_choices]))

    def sample(self, generator: torch.Generator) -> tuple[np.ndarray, np.ndarray]:
        """Per-layer widths drawn uniformly from each layer's choices."""
        def draw(choices: tuple[int, ...]) -> int:
            return choices[int(torch.randint(len(choices), (1,), generator=generator))]

        return (np.array([draw(c) for c in self.w_choices]), np.array([draw(c) for c in self.a_choices]))

    # ----------------------------------------------------------------- switching
    def set_bits(self, w_bits: Sequence[int] | np.ndarray, a_bits: Sequence[int] | np.ndarray) -> None:
        """Switch every layer to its (w, a) widths; PolicyError names a width the layer lacks."""
        names = self.layer_names
        if not len(w_bits) == len(a_bits) == len(names):
            raise PolicyError(f"a supernet policy needs {len(names)} layers, got {len(w_bits)}")
        for name, w, a, w_choices, a_choices in zip(names, w_bits, a_bits, self.w_choices, self.a_choices,
                                                    strict=True):
            if int(w) not in w_choices or int(a) not in a_choices:
                raise PolicyError(f"layer {name!r}: the supernet holds w_bits {_span(w_choices)} and a_bits "
                                  f"{_span(a_choices)}, not {int(w)}/{int(a)}")
        for name, w, a in zip(names, w_bits, a_bits, strict=True):
            self._weights[name].active = int(w)
            self._acts[name].active = int(a)

    def apply(self, policy: QuantPolicy) -> QuantPolicy:
        """Switch to ``policy`` (PolicyApplier's contract); returns the validated policy."""
        policy = policy.validate(self.layer_names, self.config.min_bits, self.config.max_bits)
        self.set_bits(policy.w_bits, policy.a_bits)
        self._policy = policy
        return policy

    def restore(self) -> None:
        """Back to float: every quantizer inactive, the shared latent weights used as they are."""
        for weight in self._weights.values():
            weight.active = None
        for act in self._acts.values():
            act.active = None
        self._policy = None

    # ----------------------------------------------------------------- what leaves
    def state_dict(self) -> dict[str, torch.Tensor]:
        """The model's tensors: latent weights, every width's steps and zero points, BN."""
        return {key: value.detach().clone() for key, value in self.model.state_dict().items()}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self.model.load_state_dict(state)

    def steps_at(self, w_bits: Sequence[int], a_bits: Sequence[int]) -> dict[str, dict[str, torch.Tensor]]:
        """Per layer, the learned steps (and zero point) of the given widths."""
        out: dict[str, dict[str, torch.Tensor]] = {}
        for name, w, a in zip(self.layer_names, w_bits, a_bits, strict=True):
            wq = cast(LSQWeightQuantizer, self._weights[name].quantizers[str(int(w))])
            aq = cast(LSQActQuantizer, self._acts[name].quantizers[str(int(a))])
            out[name] = {"w_step": wq.step.detach().clone(), "a_step": aq.step.detach().clone(),
                         "a_zero_point": aq.zero_point.detach().clone()}
        return out

    def float_model(self) -> nn.Module:
        """A plain copy of the model holding the shared latent weights and current BN statistics."""
        model = copy.deepcopy(self.model)
        for _, module in quantizable_modules(model):
            del module._modules["act_quant"]
            for key, hook in list(module._forward_pre_hooks.items()):
                if hook is act_pre_hook:  # ours only: a user's own hooks stay
                    del module._forward_pre_hooks[key]
            parametrize.remove_parametrizations(module, "weight", leave_parametrized=False)
        return model

    def __repr__(self) -> str:
        state = "float" if self._policy is None else repr(self._policy)
        return f"BitSupernet({len(self._weights)} layers, {state})"


def _span(choices: tuple[int, ...]) -> str:
    return f"{min(choices)}..{max(choices)}" if len(choices) > 1 else str(choices[0])
