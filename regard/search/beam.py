"""Batched beam search with a length penalty, n-best lists and exact stopping.

All B×K hypotheses advance together as one batch of rows. At each step the K
best continuations of every sentence are chosen among its K×V candidates;
those ending in ``</s>`` are set aside as finished (their slot is refilled by
the other candidates next step). Back-pointers are kept per step and
hypotheses are rebuilt, with their attention, only when they finish.

Stopping is exact under the length penalty lp(L) = ((5+L)/6)^α: a live
hypothesis's log-probability can only fall, so the best normalised score it
can still reach is ``logp / lp(max_len)``. A sentence stops once its n-th
best finished hypothesis beats that bound for every live one.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from regard.data.tokenizer import BOS, EOS
from regard.model.seq2seq import Seq2Seq
from regard.search.greedy import Hypothesis, force_eos, length_penalty, max_lengths, step_log_probs


@dataclass
class History:
    """Per-step back-pointers: token[t][i] was chosen for slot i from row parent[t][i]."""

    tokens: list[torch.Tensor]
    parents: list[torch.Tensor]
    weights: list[torch.Tensor | None]

    def rebuild(self, t: int, slot: int, src_len: int) -> tuple[list[int], torch.Tensor | None]:
        """Tokens (ending in ``</s>`` at step t) and attention (t+1, src_len) of one hypothesis."""
        tokens, rows = [], []
        for s in range(t, -1, -1):
            parent = int(self.parents[s][slot])
            tokens.append(int(self.tokens[s][slot]))
            if self.weights[s] is not None:
                rows.append(self.weights[s][parent, :src_len])
            slot = parent
        attention = torch.stack(rows[::-1]).float() if rows else None
        return tokens[::-1], attention


@torch.no_grad()
def beam_search(model: Seq2Seq, src: torch.Tensor, src_lengths: torch.Tensor, beam: int = 5,
                nbest: int = 1, alpha: float = 1.0, max_ratio: float = 2.0) -> list[list[Hypothesis]]:
    """src (B, S), src_lengths (B,) → per sentence, its ``nbest`` hypotheses, best first."""
    if not 1 <= nbest <= beam:
        raise ValueError(f"nbest must be between 1 and the beam size ({beam}), got {nbest}")
    B, K = src.shape[0], beam
    rows = torch.arange(B).repeat_interleave(K)
    enc = model.encode(src, src_lengths).index_select(rows)
    state = model.decoder.init_state(enc)
    limit = max_lengths(src_lengths, max_ratio)
    row_limit = limit.repeat_interleave(K)  # the same limit for each of a sentence's K rows
    scores = torch.full((B, K), float("-inf"))
    scores[:, 0] = 0.0  # only one live hypothesis at the start
    prev = torch.full((B * K,), BOS, dtype=torch.long)
    history = History([], [], [])
    found: list[list[tuple[float, int, int]]] = [[] for _ in range(B)]  # (score, step, slot)
    nth_best = torch.full((B,), float("-inf"))  # n-th best finished score per sentence
    bound_lp = length_penalty(limit + 1, alpha).float()  # lp of the longest possible output
    done = torch.zeros(B, dtype=torch.bool)
    for t in range(int(limit.max()) + 1):
        log_probs, state, weights = step_log_probs(model, prev, state, enc)
        log_probs = force_eos(log_probs, row_limit <= t)
        V = log_probs.shape[1]
        candidates = (scores.view(-1, 1) + log_probs).view(B, K * V)
        top_scores, top_index = candidates.topk(K, dim=1)  # (B, K)
        parents = (top_index // V + torch.arange(B).unsqueeze(1) * K).view(-1)
        prev = (top_index % V).view(-1)
        history.tokens.append(prev)
        history.parents.append(parents)
        history.weights.append(weights)
        state = state.index_select(parents, same_sentences=True)
        ended = (prev.view(B, K) == EOS) & (top_scores > float("-inf")) & ~done.unsqueeze(1)
        for b, k in ended.nonzero().tolist():
            found[b].append((float(top_scores[b, k]) / length_penalty(t + 1, alpha), t, b * K + k))
            if len(found[b]) >= nbest:
                nth_best[b] = sorted(found[b], reverse=True)[nbest - 1][0]
        scores = top_scores.masked_fill(ended | done.unsqueeze(1), float("-inf"))
        best_live = scores.max(dim=1).values
        # stop a sentence when nothing is live, or no live hypothesis can still enter its n-best
        done |= (best_live == float("-inf")) | (nth_best >= best_live / bound_lp)
        scores[done] = float("-inf")
        if done.all():
            break
    return [_best(history, found[b], nbest, int(src_lengths[b])) for b in range(B)]


def _best(history: History, found: list[tuple[float, int, int]], nbest: int, src_len: int) -> list[Hypothesis]:
    hyps = []
    for score, t, slot in sorted(found, key=lambda f: -f[0])[:nbest]:
        tokens, attention = history.rebuild(t, slot, src_len)
        hyps.append(Hypothesis(tokens[:-1], score, attention))
    return hyps
