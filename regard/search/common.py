"""What every search shares: the hypothesis it returns, the rules on its options, the length
rules, and the k likeliest next words of each row."""

from __future__ import annotations

from dataclasses import dataclass
from typing import get_args

import torch

from regard.config import Stopping
from regard.data.tokenizer import EOS

STOPPING = get_args(Stopping)  # beam search's stopping rules (see regard.search.beam)


def check_nbest(nbest: int, beam: int) -> None:
    """Raise ValueError unless 1 ≤ nbest ≤ beam: a search finds at most ``beam`` hypotheses."""
    if not 1 <= nbest <= beam:
        raise ValueError(f"nbest must be between 1 and the beam size ({beam}), got {nbest}")


@dataclass
class Hypothesis:
    """One output sentence.

    tokens: target subword ids, without ``</s>``
    score: log-probability (including ``</s>``) divided by the length penalty
    attention: (len(tokens) + 1, S) weights of every output step including ``</s>``, or
        (len(tokens) + 1, L, H, S) per decoder layer and head when the search was asked for
        ``heads``; on the CPU whatever the model's device; None for ``attention: none``
    """

    tokens: list[int]
    score: float
    attention: torch.Tensor | None


def length_penalty(length: int | torch.Tensor, alpha: float):
    """GNMT length penalty ((5 + |Y|) / 6)^alpha; 1 when alpha is 0."""
    return ((5.0 + length) / 6.0) ** alpha


def max_lengths(src_lengths: torch.Tensor, max_ratio: float) -> torch.Tensor:
    """Most output tokens (before ``</s>``) allowed per sentence: ratio × source + 4."""
    return (src_lengths.float() * max_ratio).long() + 4


def top_k(x: torch.Tensor, k: int, block: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    """x (N, V) → its k largest values per row and their columns, both (N, k), as ``x.topk(k)``.

    On CPU, ``topk`` (and ``max`` with indices) over a 6,000-word row is slow next to the
    vectorised row maximum ``amax``. So: take the maximum of every block of ``block``
    columns, keep the k blocks with the largest maxima (plus the partial last block), and
    rank only their columns. Every element of a dropped block is ≤ each of the k kept
    maxima, so the k largest values all lie in kept blocks.
    """
    N, V = x.shape
    k = min(k, V)
    if V <= k * block:
        return x.topk(k, dim=1)
    blocked = x.unfold(1, block, block)  # (N, nb, block), a view of the whole blocks
    nb = blocked.shape[1]
    blocks = blocked.amax(dim=2).topk(k, dim=1).indices  # (N, k)
    values = blocked[torch.arange(N, device=x.device).unsqueeze(1), blocks].view(N, k * block)
    cols = (blocks.unsqueeze(2) * block + torch.arange(block, device=x.device)).view(N, k * block)
    if nb * block < V:  # the partial last block is always a candidate
        values = torch.cat([values, x[:, nb * block:]], dim=1)
        cols = torch.cat([cols, torch.arange(nb * block, V, device=x.device).expand(N, -1)], dim=1)
    best, where = values.topk(k, dim=1)
    return best, cols.gather(1, where)


def row_candidates(logits: torch.Tensor, k: int, must_end: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """logits (N, V) → the k likeliest next words of every row: log-probs (N, k), words (N, k).

    Greedy search takes k = 1. Beam search takes k = K: a sentence's K best continuations
    come from at most K words per row, so it ranks K×K candidates per sentence, not K×V.
    Rows where ``must_end`` (N,) is True offer only ``</s>``.
    """
    log_probs = torch.log_softmax(logits, dim=1)  # one fused pass: cheaper than logsumexp
    best, words = top_k(log_probs, k)
    if must_end.any():
        only_eos = torch.full_like(best, float("-inf"))
        only_eos[:, 0] = log_probs[:, EOS]
        best = torch.where(must_end.unsqueeze(1), only_eos, best)
        words = words.masked_fill(must_end.unsqueeze(1), EOS)
    return best, words
