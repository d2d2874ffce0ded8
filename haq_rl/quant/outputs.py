"""What a model's forward returns, as class scores: a tensor, or the logits inside a tuple,
a dict or an object with ``.logits`` (Hugging Face style outputs)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from haq_rl.errors import ConfigError


def logits_of(output: Any) -> torch.Tensor:
    """The class-score tensor of ``output``: itself, its ``logits`` (attribute or key), or
    the first element of a tuple/list or the first value of a dict."""
    if isinstance(output, torch.Tensor):
        return output
    logits = getattr(output, "logits", None)
    if isinstance(logits, torch.Tensor):
        return logits
    if isinstance(output, Mapping):
        if isinstance(output.get("logits"), torch.Tensor):
            return output["logits"]
        values = list(output.values())
        if values and isinstance(values[0], torch.Tensor):
            return values[0]
    if isinstance(output, tuple | list) and output and isinstance(output[0], torch.Tensor):
        return output[0]
    raise ConfigError(f"cannot find class scores in a model output of type {type(output).__name__}: "
                      "return a tensor, a tuple/dict whose first entry is one, or an object with .logits")
