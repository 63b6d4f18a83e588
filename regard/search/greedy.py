"""Batched greedy decoding."""

from __future__ import annotations

import torch

from regard.data.tokenizer import BOS, EOS
from regard.model.seq2seq import Seq2Seq
from regard.search.common import Hypothesis, length_penalty, max_lengths, row_candidates, step_logits


@torch.no_grad()
def greedy_search(model: Seq2Seq, src: torch.Tensor, src_lengths: torch.Tensor, max_ratio: float = 2.0,
                  alpha: float = 0.0) -> list[Hypothesis]:
    """Pick the most probable word at every step, for a whole batch at once.

    src (B, S), src_lengths (B,) → one :class:`Hypothesis` per sentence. A sentence
    leaves the batch as soon as it ends, so later steps only compute the live ones.
    """
    enc = model.encode(src, src_lengths)
    state = model.decoder.init_state(enc)
    (B, S), device = src.shape, src.device
    limit = max_lengths(src_lengths, max_ratio)
    steps = int(limit.max()) + 1
    alive = torch.arange(B, device=device)  # the sentence of every row still decoding
    prev = torch.full((B,), BOS, dtype=torch.long, device=device)
    tokens = torch.full((B, steps), EOS, dtype=torch.long, device=device)
    attn = torch.zeros(B, steps, S, device=device) if model.has_attention else None
    total = torch.zeros(B, device=device)
    for t in range(steps):
        logits, state, w = step_logits(model, prev, state, enc)
        best, prev = (c[:, 0] for c in row_candidates(logits, 1, limit[alive] <= t))
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
    attn = attn.cpu() if attn is not None else None  # no copy on the CPU
    lengths, scores = src_lengths.tolist(), total.tolist()
    hyps = []
    for b, row in enumerate(tokens.tolist()):
        n = row.index(EOS)
        att = attn[b, : n + 1, : lengths[b]] if attn is not None else None
        hyps.append(Hypothesis(row[:n], scores[b] / length_penalty(n + 1, alpha), att))
    return hyps
