"""Batched greedy decoding, and what every search returns."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from regard.data.tokenizer import BOS, EOS
from regard.model.seq2seq import Seq2Seq


@dataclass
class Hypothesis:
    """One output sentence.

    tokens: target subword ids, without ``</s>``
    score: log-probability (including ``</s>``) divided by the length penalty
    attention: (len(tokens) + 1, S) weights of every output step including ``</s>``; None
        for ``attention: none``
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


def step_log_probs(model: Seq2Seq, prev: torch.Tensor, state, enc):
    """Run the decoder one step from tokens ``prev`` (N,) → log-probs (N, V), state, weights."""
    out, state, weights = model.decoder.step(model.decoder.embed(prev), state, enc)
    return torch.log_softmax(model.decoder.logits(out).float(), dim=-1), state, weights


def force_eos(log_probs: torch.Tensor, must_end: torch.Tensor) -> torch.Tensor:
    """Rows where ``must_end`` (N,) is True may only produce ``</s>`` (keeping its true log-prob)."""
    if must_end.any():
        only_eos = torch.full_like(log_probs, float("-inf"))
        only_eos[:, EOS] = log_probs[:, EOS]
        log_probs = torch.where(must_end.unsqueeze(1), only_eos, log_probs)
    return log_probs


@torch.no_grad()
def greedy_search(model: Seq2Seq, src: torch.Tensor, src_lengths: torch.Tensor, max_ratio: float = 2.0,
                  alpha: float = 0.0) -> list[Hypothesis]:
    """Pick the most probable word at every step, for a whole batch at once.

    src (B, S), src_lengths (B,) → one :class:`Hypothesis` per sentence. A sentence
    leaves the batch as soon as it ends, so later steps only compute the live ones.
    """
    enc = model.encode(src, src_lengths)
    state = model.decoder.init_state(enc)
    B, S = src.shape
    limit = max_lengths(src_lengths, max_ratio)
    steps = int(limit.max()) + 1
    alive = torch.arange(B)  # the sentence of every row still decoding
    prev = torch.full((B,), BOS, dtype=torch.long)
    tokens = torch.full((B, steps), EOS, dtype=torch.long)
    attn = torch.zeros(B, steps, S) if model.has_attention else None
    total = torch.zeros(B)
    for t in range(steps):
        log_probs, state, w = step_log_probs(model, prev, state, enc)
        log_probs = force_eos(log_probs, limit[alive] <= t)
        best, prev = log_probs.max(dim=-1)
        total[alive] = best if t == 0 else total[alive] + best
        tokens[alive, t] = prev
        if attn is not None:
            attn[alive, t] = w.float()
        live = prev != EOS
        if not live.any():
            break
        if not live.all():
            keep = live.nonzero().squeeze(1)
            alive, prev = alive[keep], prev[keep]
            enc, state = enc.index_select(keep), state.index_select(keep, keep)
    hyps = []
    for b, row in enumerate(tokens.tolist()):
        n = row.index(EOS)
        att = attn[b, : n + 1, : int(src_lengths[b])] if attn is not None else None
        hyps.append(Hypothesis(row[:n], float(total[b]) / length_penalty(n + 1, alpha), att))
    return hyps
