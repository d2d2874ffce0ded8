"""What :meth:`QuantizationEnv.render` draws: the policy so far, as text or as an RGB image.

``rgb_array`` is the mode stable-baselines3's ``make_vec_env`` asks for by default and the
one Gymnasium's video recorders read, so the image is a plain ``uint8`` array drawn with
numpy (no plotting library): one pair of bars per layer, weight bits then activation bits,
bar height proportional to the bits.
"""

from __future__ import annotations

import numpy as np

#: Pixels per bit of bar height and per bar width; a one-pixel gap separates layers.
BIT_HEIGHT = 8
BAR_WIDTH = 3
#: Bar colours (RGB): weights, activations, and layers pinned at 8 bits.
WEIGHT_COLOUR = (31, 119, 180)
ACTIVATION_COLOUR = (255, 127, 14)
PINNED_COLOUR = (150, 150, 150)
BACKGROUND = (255, 255, 255)
#: The layer the next step decides is underlined in this colour.
CURSOR_COLOUR = (214, 39, 40)


def policy_text(layer_names: list[str], w_bits: np.ndarray, a_bits: np.ndarray) -> str:
    """One line per layer: ``name: wW aA``."""
    return "\n".join(f"{name}: w{w} a{a}" for name, w, a in zip(layer_names, w_bits, a_bits, strict=True))


def policy_image(w_bits: np.ndarray, a_bits: np.ndarray, pinned: np.ndarray, max_bits: int,
                 cursor: int | None) -> np.ndarray:
    """An ``(H, W, 3)`` uint8 image of the bits: per layer a weight and an activation bar.

    ``cursor``: the layer the next step decides (underlined), None once the episode ended.
    """
    layers = len(w_bits)
    pitch = 2 * BAR_WIDTH + 1
    height = max_bits * BIT_HEIGHT + 2  # two rows under the bars for the cursor
    image = np.empty((height, layers * pitch + 1, 3), dtype=np.uint8)
    image[:] = BACKGROUND
    for layer in range(layers):
        left = layer * pitch + 1
        for offset, bits, colour in ((0, w_bits[layer], WEIGHT_COLOUR), (BAR_WIDTH, a_bits[layer], ACTIVATION_COLOUR)):
            top = (max_bits - int(bits)) * BIT_HEIGHT
            image[top:max_bits * BIT_HEIGHT, left + offset:left + offset + BAR_WIDTH] = \
                PINNED_COLOUR if pinned[layer] else colour
    if cursor is not None:
        left = cursor * pitch + 1
        image[-2:, left:left + 2 * BAR_WIDTH] = CURSOR_COLOUR
    return image
