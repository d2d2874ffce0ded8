"""HAQ's per-step state embedding (Wang et al., CVPR 2019, Sec. 3.1).

One row of features per layer, each scaled to [0, 1] by min-max over the model's
layers; two features change per step: the previous action (bits chosen at the step
before, scaled to [0, 1]) and the weight-or-activation flag.
"""

from __future__ import annotations

import numpy as np

from haq_rl.hardware import LayerSpec

FEATURE_NAMES: tuple[str, ...] = (
    "layer_index",
    "is_conv",
    "is_depthwise",
    "is_linear",
    "in_channels",
    "out_channels",
    "stride",
    "kernel",
    "log_weight_count",
    "log_input_size",
    "previous_action",
    "is_activation_step",
)
PREVIOUS_ACTION = FEATURE_NAMES.index("previous_action")
ACTIVATION_FLAG = FEATURE_NAMES.index("is_activation_step")


def static_layer_features(specs: list[LayerSpec]) -> np.ndarray:
    """[L, F] float32 of the per-layer features, min-max scaled to [0, 1] per column.

    Weight counts and feature-map sizes span orders of magnitude, so they are taken in
    log scale before scaling (HAQ used raw values, which squeezes most layers to ~0).
    """
    rows = []
    for index, spec in enumerate(specs):
        rows.append([
            index,
            spec.kind in ("conv", "grouped"),
            spec.kind == "depthwise",
            spec.kind == "linear",
            spec.in_channels,
            spec.out_channels,
            spec.stride,
            spec.kernel,
            np.log(spec.weight_count),
            np.log(spec.in_h * spec.in_w),
            0.0,
            0.0,
        ])
    features = np.asarray(rows, dtype=np.float64)
    low, high = features.min(axis=0), features.max(axis=0)
    span = np.where(high > low, high - low, 1.0)
    scaled = (features - low) / span
    # Binary flags keep their meaning even when every layer shares them.
    for column in (1, 2, 3):
        scaled[:, column] = features[:, column]
    return scaled.astype(np.float32)
