"""Batched greedy decoding."""

from __future__ import annotations

import torch

from regard.data.tokenizer import BOS, EOS
from regard.model.base import EncoderDecoder
from regard.search.common import Hypothesis, length_penalty, max_lengths, row_candidates


@torch.no_grad()
def greedy_search(model: EncoderDecoder, src: torch.Tensor, src_lengths: torch.Tensor, max_ratio: float = 2.0,
                  alpha: float = 0.0, attention: str = "layer") -> list[Hypothesis]:
    """Pick the most probable word at every step, for a whole batch at once.

    src (B, S), src_lengths (B,) → one :class:`Hypothesis` per sentence, with ``attention``
    (see :mod:`regard.model.base`). A sentence leaves the batch as soon as it ends, so later
    steps only compute the live ones.
    """
    state = model.start(src, src_lengths, attention)
    (B, S), device = src.shape, src.device
    limit = max_lengths(src_lengths, max_ratio)
    steps = int(limit.max()) + 1
    alive = torch.arange(B, device=device)  # the sentence of every row still decoding
    prev = torch.full((B,), BOS, dtype=torch.long, device=device)
    tokens = torch.full((B, steps), EOS, dtype=torch.long, device=device)
    attn = None  # (B, steps, ..., S) once the first step shows the attention's shape
    total = torch.zeros(B, device=device)
    for t in range(steps):
        logits, w, state = model.step(state, prev)
        best, prev = (c[:, 0] for c in row_candidates(logits, 1, limit[alive] <= t))
        total[alive] = best if t == 0 else total[alive] + best
        tokens[alive, t] = prev
        if w is not None:
            attn = w.new_zeros(B, steps, *w.shape[1:], dtype=torch.float32) if attn is None else attn
            attn[alive, t] = w.float()
        live = prev != EOS
        if not live.any():
            break
        if not live.all():
            keep = live.nonzero().squeeze(1)
            alive, prev = alive[keep], prev[keep]
            state = state.reorder(keep, keep)
    attn = attn.cpu() if attn is not None else None  # no copy on the CPU
    lengths, scores = src_lengths.tolist(), total.tolist()
    hyps = []
    for b, row in enumerate(tokens.tolist()):
        n = row.index(EOS)
        att = attn[b, : n + 1, ..., : lengths[b]] if attn is not None else None
        hyps.append(Hypothesis(row[:n], scores[b] / length_penalty(n + 1, alpha), att))
    return hyps
