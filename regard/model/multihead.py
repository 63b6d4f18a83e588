"""The Transformer's parts: sinusoidal positions, multi-head self- and cross-attention, feed-forward.

Shapes: B sentences, T query positions, S source positions, D model size, H heads of
size D/H. Attention runs through PyTorch's ``scaled_dot_product_attention`` (its fused CPU
kernels) wherever the weights themselves are not wanted: in self-attention always, in
cross-attention unless the caller asks for the weights (to show them), which are then
computed as softmax(QKᵀ/√d)V, the same function written out. Boolean masks are True where a
key may be attended to.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def sinusoids(start: int, length: int, size: int, device: torch.device | None = None) -> torch.Tensor:
    """Positions start … start + length − 1 → (length, size) fp32 encodings (Vaswani et al. 2017):
    sin(p / 10000^(2i/size)) in the even columns, cos in the odd ones."""
    positions = torch.arange(start, start + length, dtype=torch.float32, device=device).unsqueeze(1)
    rates = torch.exp(torch.arange(0, size, 2, dtype=torch.float32, device=device) * (-math.log(10000.0) / size))
    table = torch.zeros(length, size, device=device)
    table[:, 0::2] = torch.sin(positions * rates)
    table[:, 1::2] = torch.cos(positions * rates[: size // 2])
    return table


def split_heads(x: torch.Tensor, heads: int) -> torch.Tensor:
    """(B, T, D) → (B, H, T, D/H)."""
    B, T, D = x.shape
    return x.view(B, T, heads, D // heads).transpose(1, 2)


def merge_heads(x: torch.Tensor) -> torch.Tensor:
    """(B, H, T, D/H) → (B, T, D)."""
    B, H, T, d = x.shape
    return x.transpose(1, 2).reshape(B, T, H * d)


class SelfAttention(nn.Module):
    """Multi-head self-attention with one fused query–key–value projection."""

    def __init__(self, size: int, heads: int, dropout: float):
        super().__init__()
        self.heads, self.dropout = heads, dropout
        self.qkv = nn.Linear(size, 3 * size)
        self.out = nn.Linear(size, size)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None, causal: bool = False) -> torch.Tensor:
        """x (B, T, D), mask (B, 1, 1, T) or None; ``causal``: position t sees only ≤ t → (B, T, D)."""
        q, k, v = (split_heads(part, self.heads) for part in self.qkv(x).chunk(3, dim=-1))
        context = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=causal,
                                                 dropout_p=self.dropout if self.training else 0.0)
        return self.out(merge_heads(context))

    def step(self, x: torch.Tensor, cache: tuple[torch.Tensor, torch.Tensor]
             ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        """One new position per row: x (N, 1, D), cache of the earlier positions' keys and values
        (N, H, t, D/H) each → (N, 1, D) and the cache with this position's appended."""
        q, k, v = (split_heads(part, self.heads) for part in self.qkv(x).chunk(3, dim=-1))
        k, v = torch.cat([cache[0], k], dim=2), torch.cat([cache[1], v], dim=2)
        return self.out(merge_heads(F.scaled_dot_product_attention(q, k, v))), (k, v)


class CrossAttention(nn.Module):
    """Multi-head attention of the decoder over the encoder's output."""

    def __init__(self, size: int, heads: int, dropout: float):
        super().__init__()
        self.heads, self.dropout = heads, dropout
        self.q = nn.Linear(size, size)
        self.kv = nn.Linear(size, 2 * size)
        self.out = nn.Linear(size, size)

    def memory(self, memory: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Keys and values of the encoder output, once per sentence: (B, S, D) → 2 × (B, H, S, D/H)."""
        k, v = self.kv(memory).chunk(2, dim=-1)
        return split_heads(k, self.heads), split_heads(v, self.heads)

    def forward(self, x: torch.Tensor, keys: torch.Tensor, values: torch.Tensor, mask: torch.Tensor,
                weights: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
        """x (B, T, D), keys and values (B, H, S, D/H), mask (B, 1, 1, S) → (B, T, D) and, with
        ``weights``, the attention weights (B, H, T, S), each row summing to 1 over real positions.

        In search, T holds a sentence's G hypotheses (one query each) rather than positions."""
        q = split_heads(self.q(x), self.heads)
        dropout = self.dropout if self.training else 0.0
        if not weights:
            context = F.scaled_dot_product_attention(q, keys, values, attn_mask=mask, dropout_p=dropout)
            return self.out(merge_heads(context)), None
        scores = (q @ keys.transpose(2, 3)).float() / math.sqrt(q.shape[-1])
        attention = torch.softmax(scores.masked_fill(~mask, float("-inf")), dim=-1)  # (B, H, T, S)
        context = F.dropout(attention, dropout, self.training).to(values.dtype) @ values
        return self.out(merge_heads(context)), attention


class FeedForward(nn.Module):
    """Position-wise Linear → ReLU → dropout → Linear."""

    def __init__(self, size: int, inner: int, dropout: float):
        super().__init__()
        self.inner = nn.Linear(size, inner)
        self.outer = nn.Linear(inner, size)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(…, D) → (…, D)."""
        return self.outer(self.dropout(torch.relu(self.inner(x))))
