"""Attention layers made quantizable: ``nn.MultiheadAttention`` with explicit projections.

PyTorch's ``nn.MultiheadAttention`` applies its input projection (``in_proj_weight``) and
its output projection (``out_proj``) functionally, so no forward hook sees them and they
could be neither costed nor quantized. :func:`make_attention_explicit` swaps every such
module for :class:`ExplicitMultiheadAttention`, which computes the same function with the
projections as ordinary ``nn.Linear`` modules (``in_proj``: E -> 3E, ``out_proj``: E -> E).
They then are quantizable layers like any Linear: weights per output channel, their input
activations quantized, costed as a linear layer over every token (batch x sequence
length). The attention-score matmuls (QK^T, softmax, AV) stay in float.
"""

from __future__ import annotations

import math
from collections.abc import MutableMapping

import torch
from torch import nn

from haq_rl.errors import ConfigError


class ExplicitMultiheadAttention(nn.Module):
    """The function of an ``nn.MultiheadAttention`` with ``in_proj`` and ``out_proj`` Linears.

    Same call signature and results (within float rounding). Self-attention (query is key
    is value) calls ``in_proj`` once; cross-attention calls it for query, key and value
    (each call costed). Fused fast paths of ``nn.TransformerEncoderLayer`` are not taken
    (``in_proj_bias`` reads as None), so every projection runs through its module.
    """

    def __init__(self, source: nn.MultiheadAttention) -> None:
        super().__init__()
        if not source._qkv_same_embed_dim or source.bias_k is not None:
            raise ConfigError("attention with kdim/vdim != embed_dim or add_bias_kv is not supported")
        dim = source.embed_dim
        self.embed_dim = dim
        self.num_heads = source.num_heads
        self.head_dim = dim // source.num_heads
        self.dropout = float(source.dropout)
        self.batch_first = bool(source.batch_first)
        self._qkv_same_embed_dim = True
        self.in_proj = nn.Linear(dim, 3 * dim, bias=source.in_proj_bias is not None)
        self.out_proj = nn.Linear(dim, dim, bias=source.out_proj.bias is not None)
        with torch.no_grad():
            self.in_proj.weight.copy_(source.in_proj_weight)
            self.out_proj.weight.copy_(source.out_proj.weight)
            if self.in_proj.bias is not None:
                self.in_proj.bias.copy_(source.in_proj_bias)
            if self.out_proj.bias is not None:
                self.out_proj.bias.copy_(source.out_proj.bias)
        self.in_proj.to(source.in_proj_weight.device)
        self.out_proj.to(source.in_proj_weight.device)

    @property
    def in_proj_bias(self) -> None:
        """None, so that TransformerEncoderLayer skips its fused kernel (which would bypass
        the quantized projections)."""
        return None

    def forward(self, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                key_padding_mask: torch.Tensor | None = None, need_weights: bool = True,
                attn_mask: torch.Tensor | None = None, average_attn_weights: bool = True,
                is_causal: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
        unbatched = query.dim() == 2
        if unbatched:
            query, key, value = (x.unsqueeze(0 if self.batch_first else 1) for x in (query, key, value))
        if not self.batch_first:
            query, key, value = (x.transpose(0, 1) for x in (query, key, value))
        dim = self.embed_dim
        if query is key and key is value:
            q, k, v = self.in_proj(query).split(dim, dim=-1)
        else:
            q = self.in_proj(query)[..., :dim]
            k = self.in_proj(key)[..., dim:2 * dim]
            v = self.in_proj(value)[..., 2 * dim:]
        batch, target, source = q.shape[0], q.shape[1], k.shape[1]
        q, k, v = (x.reshape(batch, -1, self.num_heads, self.head_dim).transpose(1, 2) for x in (q, k, v))
        scores = q @ k.transpose(-2, -1) / math.sqrt(self.head_dim)  # float: not quantized
        scores = scores + self._additive_mask(attn_mask, key_padding_mask, is_causal, batch, target, source,
                                              scores.dtype, scores.device)
        weights = torch.softmax(scores, dim=-1)
        if self.training and self.dropout > 0:
            weights = nn.functional.dropout(weights, p=self.dropout)
        out = (weights @ v).transpose(1, 2).reshape(batch, target, dim)
        out = self.out_proj(out)
        if not self.batch_first:
            out = out.transpose(0, 1)
        if unbatched:
            out = out.squeeze(0 if self.batch_first else 1)
        if not need_weights:
            return out, None
        shown = weights.mean(dim=1) if average_attn_weights else weights
        return out, shown.squeeze(0) if unbatched else shown

    def _additive_mask(self, attn_mask: torch.Tensor | None, key_padding_mask: torch.Tensor | None,
                       is_causal: bool, batch: int, target: int, source: int, dtype: torch.dtype,
                       device: torch.device) -> torch.Tensor:
        """One additive mask (0 or -inf) of shape broadcastable to (B, H, T, S)."""
        mask = torch.zeros(1, 1, target, source, dtype=dtype, device=device)
        if attn_mask is None and is_causal:
            attn_mask = torch.ones(target, source, dtype=torch.bool, device=device).triu(1)
        if attn_mask is not None:
            part = _as_additive(attn_mask, dtype)
            mask = mask + (part.reshape(batch, self.num_heads, target, source) if part.dim() == 3 else part)
        if key_padding_mask is not None:
            mask = mask + _as_additive(key_padding_mask, dtype).reshape(batch, 1, 1, source)
        return mask


def _as_additive(mask: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """PyTorch's mask convention: a bool True (or a float -inf) blocks a position."""
    if mask.dtype == torch.bool:
        return torch.zeros(mask.shape, dtype=dtype, device=mask.device).masked_fill(mask, float("-inf"))
    return mask.to(dtype)


def make_attention_explicit(model: nn.Module) -> int:
    """Replace every ``nn.MultiheadAttention`` of ``model`` in place; returns how many."""
    replaced = 0
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, nn.MultiheadAttention):
                setattr(parent, name, ExplicitMultiheadAttention(child).train(child.training))
                replaced += 1
    return replaced


def upgrade_attention_keys(model: nn.Module, state: MutableMapping[str, torch.Tensor]) -> None:
    """Rename a saved ``nn.MultiheadAttention``'s ``in_proj_weight``/``in_proj_bias`` entries to
    the ``in_proj.weight``/``in_proj.bias`` of the explicit module that replaced it."""
    for prefix, module in model.named_modules():
        if isinstance(module, ExplicitMultiheadAttention):
            base = f"{prefix}." if prefix else ""
            for old, new in (("in_proj_weight", "in_proj.weight"), ("in_proj_bias", "in_proj.bias")):
                if base + old in state and base + new not in state:
                    state[base + new] = state.pop(base + old)
