"""Finding the quantizable layers of a model (Conv2d and Linear, in module order).

The one definition of "quantizable layer" (:data:`QUANTIZABLE_TYPES`); haq_rl.models,
above quant, uses it for its layer specs.
"""

from __future__ import annotations

from torch import nn

from haq_rl.errors import ConfigError

QUANTIZABLE_TYPES: tuple[type[nn.Conv2d], type[nn.Linear]] = (nn.Conv2d, nn.Linear)


def quantizable_modules(model: nn.Module) -> list[tuple[str, nn.Conv2d | nn.Linear]]:
    """``(name, module)`` of every Conv2d / Linear of ``model`` in ``named_modules`` order."""
    layers = [(n, m) for n, m in model.named_modules() if isinstance(m, QUANTIZABLE_TYPES)]
    if not layers:
        raise ConfigError(f"{type(model).__name__} has no Conv2d or Linear layer to quantize")
    return layers
