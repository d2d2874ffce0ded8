"""The differentiable relaxation ``--method sdq`` trains: per-layer bit parameters over the
task's widths, a model whose layers mix their quantizers by them, and the expected cost.

Two relaxations, one interface (:class:`BitRelaxation`):

* ``sdq`` (SDQ, Huang et al., ICML 2022, Sec. 3.2): each layer's weight and activation
  width is a real *differentiable bitwidth parameter* ``theta`` in ``[min_bits, max_bits]``.
  Between its two adjacent widths ``lo = floor(theta)`` and ``hi = lo + 1`` the layer is
  quantized to ``hi`` with probability ``p`` and to ``lo`` otherwise, one draw per step;
  the gradient reaches ``p`` straight through the draw (``dQ/dp = Q_hi - Q_lo``). At
  temperature 1, ``p`` is the fractional part of ``theta`` (SDQ's interpolation); a
  temperature ``T < 1`` sharpens it, ``p = clamp((frac - 1/2) / T + 1/2, 0, 1)``, towards the
  rounding the final policy takes, keeping the gradient of ``frac`` (our annealing; SDQ
  fixes bits in stages instead).
* ``edmips`` (EdMIPS, Cai and Vasconcelos, CVPR 2020, Eq. 9-11): one logit per width and
  layer; the layer's output is the softmax(logits / T)-weighted sum of every width's
  quantization, and the final width is the arg-max.

Both price a policy distribution by the task's cost table: the expected cost of layer
``l`` is ``sum_{w,a} P_w(l, w) P_a(l, a) C[l, w, a]`` (independent weight and activation
choices), differentiable through the probabilities. The quantizers are the supernet's
(one LSQ quantizer per width, :mod:`haq_rl.quant.switchable`); only how a forward combines
them is new here.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any, cast

import numpy as np
import torch
from torch import nn

from haq_rl.errors import PolicyError
from haq_rl.quant.calibration import collect_input_stats
from haq_rl.quant.layers import quantizable_modules
from haq_rl.quant.switchable import (
    SwitchableActivation,
    SwitchableWeight,
    bit_choices,
    install_width_quantizers,
)
from haq_rl.task.budget import pinned_layers

RELAXATIONS = ("sdq", "edmips")


class _Mixture:
    """Forward of a width switch as a weighted sum of its widths' quantizations.

    ``mixture`` is set by :meth:`BitRelaxation.set_mixture` before each forward: a list of
    ``(bits, coefficient)``; a coefficient is a 0-d tensor carrying the gradient to the
    bit parameters. None falls back to the switch's ``active`` width (or float).
    """

    mixture: list[tuple[int, torch.Tensor]] | None = None
    quantizers: nn.ModuleDict

    def mixed(self, x: torch.Tensor) -> torch.Tensor | None:
        if self.mixture is None:
            return None
        out = torch.zeros((), dtype=x.dtype, device=x.device)
        for bits, coefficient in self.mixture:
            out = out + coefficient * self.quantizers[str(bits)](x)
        return out


class MixedWeight(_Mixture, SwitchableWeight):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mixed = self.mixed(x)
        return super().forward(x) if mixed is None else mixed


class MixedActivation(_Mixture, SwitchableActivation):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mixed = self.mixed(x)
        return super().forward(x) if mixed is None else mixed


class BitRelaxation(nn.Module):
    """A copy of the task's float model whose layers mix their widths by learned bit parameters.

    Arguments:
        task: the :class:`~haq_rl.task.Task` (model, layers, calibration, quantizer settings).
        kind: one of :data:`RELAXATIONS`.
        objectives: ``[(cost array [L, B, B], budget as an absolute cost)]``: the
            objective and any extra budgets, from the scorer's cost table.

    Parameters: the model's (latent weights, LSQ steps, BatchNorm) and ``bit_params``
    (``sdq``: ``[2, L]`` thetas of weights and activations; ``edmips``: ``[2, L, K]``
    logits over the K widths). Pinned layers (and a weight-only task's activations) hold
    one width and ignore their parameters.
    """

    costs: torch.Tensor  # [objectives, L, 8, 8]
    budgets: torch.Tensor  # [objectives], absolute costs
    multipliers: torch.Tensor  # [objectives], the budget penalty's weights

    def __init__(self, task: Any, kind: str, objectives: Sequence[tuple[np.ndarray, float]]) -> None:
        super().__init__()
        if kind not in RELAXATIONS:
            raise PolicyError(f"relaxation {kind!r} must be one of {', '.join(RELAXATIONS)}")
        spec = task.spec
        self.kind = kind
        self.min_bits, self.max_bits = int(spec.min_bits), int(spec.max_bits)
        self.model = copy.deepcopy(task.model).to(task.device).eval()
        layers = quantizable_modules(self.model)
        self.layer_names = [name for name, _ in layers]
        stats = collect_input_stats(self.model, dict(layers), [x.to(task.device) for x in task.calibration_inputs()])
        pinned = pinned_layers(len(layers), spec.pin_first_last)
        self.w_choices, self.a_choices = bit_choices(len(layers), pinned, self.min_bits, self.max_bits,
                                                     spec.weight_only)
        installed = install_width_quantizers(layers, self.w_choices, self.a_choices, stats, task.quant_config, True,
                                             weight_class=MixedWeight, act_class=MixedActivation)
        self._weights: list[MixedWeight] = [cast(MixedWeight, weight) for _, weight, _ in installed]
        self._acts: list[MixedActivation] = [cast(MixedActivation, act) for _, _, act in installed]
        self.free = torch.tensor([[len(c) > 1 for c in self.w_choices], [len(c) > 1 for c in self.a_choices]])
        widths = self.max_bits - self.min_bits + 1
        if kind == "sdq":  # SDQ starts every layer at the highest precision and lowers it
            start = torch.full((2, len(layers)), float(self.max_bits))
        else:  # EdMIPS: uniform over the widths
            start = torch.zeros((2, len(layers), widths))
        self.bit_params = nn.Parameter(start)
        costs = [torch.as_tensor(np.nan_to_num(array, nan=0.0), dtype=torch.float32) for array, _ in objectives]
        self.register_buffer("costs", torch.stack(costs))  # [objectives, L, 8, 8]
        self.register_buffer("budgets", torch.tensor([float(b) for _, b in objectives], dtype=torch.float32))
        #: The Lagrange multiplier of each budget (set and updated by the trainer).
        self.register_buffer("multipliers", torch.zeros(len(objectives)))

    # ----------------------------------------------------------------- distributions
    def probabilities(self, temperature: float) -> torch.Tensor:
        """``[2, L, max_bits]``: each layer's distribution over widths 1..max_bits (weights, activations)."""
        layers = len(self.layer_names)
        dense = torch.zeros((2, layers, self.max_bits))
        if self.kind == "sdq":
            lo, p = self._lower_and_p(temperature)
            dense = dense.scatter(2, (lo - 1).unsqueeze(-1), (1.0 - p).unsqueeze(-1))
            dense = dense.scatter_add(2, lo.unsqueeze(-1), p.unsqueeze(-1))
        else:
            soft = torch.softmax(self.bit_params / temperature, dim=-1)
            dense = torch.cat([torch.zeros((2, layers, self.min_bits - 1)), soft], dim=-1)
        fixed = torch.zeros_like(dense)
        fixed[..., 7] = 1.0  # a fixed layer's one width: 8 (the reference)
        return torch.where(self.free.unsqueeze(-1), dense, fixed)

    def _lower_and_p(self, temperature: float) -> tuple[torch.Tensor, torch.Tensor]:
        """SDQ's lower adjacent width (long ``[2, L]``) and probability of the upper one."""
        theta = self.bit_params
        lo = torch.clamp(torch.floor(theta.detach()), self.min_bits, self.max_bits - 1).long()
        frac = theta - lo
        sharp = torch.clamp((frac - 0.5) / temperature + 0.5, 0.0, 1.0)
        # Sharpened in the forward, SDQ's linear interpolation in the backward: a clamped
        # ``p`` would have no gradient, and a theta there would freeze wherever it stood.
        return lo, frac + (sharp - frac).detach()

    def expected_costs(self, temperature: float) -> torch.Tensor:
        """Per objective, the expected cost over its budget (``[objectives]``; 1 is the budget)."""
        probs = self.probabilities(temperature)
        total = torch.einsum("lw,olwa,la->o", probs[0], self.costs, probs[1])
        return total / self.budgets

    def rounded(self, temperature: float) -> tuple[np.ndarray, np.ndarray]:
        """The policy the relaxation stands for: the most probable width of every layer."""
        probs = self.probabilities(temperature).detach()
        bits = probs.argmax(dim=-1).numpy() + 1
        return bits[0].astype(np.int64), bits[1].astype(np.int64)

    # ----------------------------------------------------------------- forward
    def set_mixture(self, temperature: float, generator: torch.Generator | None) -> None:
        """Give every layer its coefficients for the next forward: SDQ draws ``lo`` or ``hi``
        (``generator``; None takes the more probable one), EdMIPS weighs every width."""
        if self.kind == "sdq":
            lo, p = self._lower_and_p(temperature)
            if generator is None:
                draw = (p.detach() >= 0.5).float()
            else:
                draw = (torch.rand(p.shape, generator=generator) < p.detach()).float()
            upper = draw + p - p.detach()  # the draw, with the straight-through gradient of p
        else:
            soft = torch.softmax(self.bit_params / temperature, dim=-1)
        for index in range(len(self.layer_names)):
            for row, switch, choices in ((0, self._weights[index], self.w_choices[index]),
                                         (1, self._acts[index], self.a_choices[index])):
                if len(choices) == 1:
                    switch.mixture = [(choices[0], torch.ones(()))]
                elif self.kind == "sdq":
                    low = int(lo[row, index])
                    switch.mixture = [(low, 1.0 - upper[row, index]), (low + 1, upper[row, index])]
                else:
                    switch.mixture = [(b, soft[row, index, b - self.min_bits]) for b in choices]

    def forward(self, inputs: torch.Tensor) -> Any:
        return self.model(inputs)
