"""Per-layer importance measured on the supernet, for the integer program (``hawq``'s
``sensitivity=supernet``, and the guided agent's anchor).

The integer program needs an additive price per layer and width. LIMPQ (Tang et al., ECCV
2022) learns such importances on a quantized supernet; here they are read off the same
supernet evaluations the predictor is fitted on: a ridge regression of the KL on one-hot
widths per layer (:class:`~haq_rl.supernet.predictor.BitsPredictor`, kind ``onehot``) is an
additive table ``KL ~ sum_l c_w[l, w_l] + c_a[l, a_l]``. Each layer's prices are its
coefficients relative to 8 bits, made non-increasing in the bits (one more bit never
costs accuracy) and non-negative, so the program reads them as HAWQ's Hessian ones.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from haq_rl.quant.sensitivity import LayerSensitivity
from haq_rl.supernet.predictor import PREDICTOR_SAMPLES, PolicySamples, load_or_sample, onehot_table
from haq_rl.supernet.reward import supernet_config, supernet_evaluator
from haq_rl.supernet.tabulated import shipped_evaluations, shipped_evaluator, shipped_table
from haq_rl.supernet.train import train_supernet

logger = logging.getLogger(__name__)


def supernet_sensitivity(task: Any, samples: int = PREDICTOR_SAMPLES, seed: int = 0,
                         progress: bool = True) -> LayerSensitivity:
    """Weight and activation prices per layer and width, from supernet evaluations (KL)."""
    # The benchmark tasks ship these evaluations (haq_rl.supernet.tabulated): no supernet needed.
    data = shipped_evaluations(task) if (samples, seed) == (PREDICTOR_SAMPLES, 0) else None
    if data is None:
        trained = train_supernet(task, supernet_config(task), progress=progress)
        data = load_or_sample(task, supernet_evaluator(task, trained), trained, samples, seed, progress)
    return sensitivity_from_samples(task, data)


def sensitivity_from_samples(task: Any, data: PolicySamples) -> LayerSensitivity:
    """Weight and activation prices per layer and width fitted on supernet evaluations."""
    bits = tuple(range(task.spec.min_bits, task.spec.max_bits + 1))
    weight, activation = onehot_table(data, bits)
    return LayerSensitivity(layer_names=list(task.layer_names), bits=bits, weight=_prices(weight),
                            activation=_prices(activation), hessian_trace=np.full(len(task.layers), np.nan))


def tabulated_prices(task: Any, progress: bool = True) -> LayerSensitivity:
    """``reward_source: tabulated``'s layer prices (hawq / guided ``sensitivity=supernet``):
    fitted on the whole shipped table, no supernet loaded."""
    table = shipped_table(task)
    if table is None:
        shipped_evaluator(task, tabulated=True)  # raises the one-line "no shipped table" error
        raise AssertionError("unreachable")
    return sensitivity_from_samples(task, table.rows())


def _prices(table: np.ndarray) -> np.ndarray:
    """Coefficients ``[layer, width]`` -> prices relative to the widest width, non-increasing
    in the bits and non-negative (noise in the fit must not make a bit look harmful)."""
    relative = table - table[:, -1:]
    monotone = np.maximum.accumulate(relative[:, ::-1], axis=1)[:, ::-1]
    return np.maximum(monotone, 0.0)
