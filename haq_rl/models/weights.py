"""Your trained weights into a model: a plain ``state_dict`` file or a haq-rl checkpoint.

Loaded with ``torch.load(weights_only=True)`` (a file that needs unpickling code is
refused), then checked strictly: every key present, no extra key, every shape equal. Any
mismatch is one line naming the first offending keys.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn

from haq_rl.checkpoint_io import load_torch_file
from haq_rl.errors import CheckpointError
from haq_rl.models.attention import upgrade_attention_keys

#: How many offending keys an error names.
SHOWN_KEYS = 3
#: The largest weight (or BatchNorm statistic) magnitude accepted from a weights file.
MAX_WEIGHT = 1e10


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """The tensors of a weights file: a ``state_dict`` itself, or the ``state_dict`` entry of
    a haq-rl checkpoint (``haq-rl pretrain`` or ``finetune`` output)."""
    path = Path(path).expanduser()
    payload = load_torch_file(path, "weights file")
    if isinstance(payload, Mapping) and isinstance(payload.get("state_dict"), Mapping):
        payload = payload["state_dict"]
    if not isinstance(payload, Mapping) or not all(
            isinstance(key, str) and isinstance(value, torch.Tensor) for key, value in payload.items()):
        raise CheckpointError(f"{path} holds no state_dict (a mapping of names to tensors, as "
                              "torch.save(model.state_dict(), path) writes)")
    return dict(payload)


def load_weights(model: nn.Module, path: str | Path, model_name: str = "the model") -> nn.Module:
    """Load the weights file ``path`` into ``model`` (strict) and return it in eval mode."""
    state = read_state_dict(path)
    upgrade_attention_keys(model, state)  # saved from nn.MultiheadAttention, loaded into its explicit form
    expected = model.state_dict()
    missing = [key for key in expected if key not in state]
    extra = [key for key in state if key not in expected]
    reshaped = [f"{key} {tuple(state[key].shape)} vs {tuple(value.shape)}" for key, value in expected.items()
                if key in state and state[key].shape != value.shape]
    problems = []
    for label, keys in (("missing keys", missing), ("unexpected keys", extra), ("shape mismatch", reshaped)):
        if keys:
            more = f" and {len(keys) - SHOWN_KEYS} more" if len(keys) > SHOWN_KEYS else ""
            problems.append(f"{label} {', '.join(keys[:SHOWN_KEYS])}{more}")
    if problems:
        raise CheckpointError(f"weights {path} do not fit {model_name}: {'; '.join(problems)}")
    for key, value in state.items():
        # NaN, inf or astronomically large weights end in a traceback deep in calibration
        # (torch.histc) or a model at chance: refuse them here, naming the tensor.
        if value.is_floating_point() and value.numel() and not (
                bool(torch.isfinite(value).all()) and float(value.abs().max()) <= MAX_WEIGHT):
            worst = "non-finite values" if not bool(torch.isfinite(value).all()) else \
                f"values up to {float(value.abs().max()):.3g} (at most {MAX_WEIGHT:g})"
            raise CheckpointError(f"weights {path}: {key} holds {worst}")
    model.load_state_dict(state, strict=True)
    return model.eval()


__all__ = ["load_weights", "read_state_dict"]
