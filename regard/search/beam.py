"""Batched beam search with a length penalty, n-best lists and exact stopping.

The hypotheses advance together as one batch of rows: one row per sentence at the
first step (there is only ``<s>`` to continue), K after. At each step the K best
continuations of every sentence are chosen among its rows' candidates (in practice among
the K likeliest words of each row, which contain them); those ending in ``</s>`` are set
aside as finished, and their rows stay dead for one step (their slots are refilled by the
other candidates): the output layer and softmax, half of a step's work, skip them. A
sentence whose search is over leaves the batch, so later steps compute only live
sentences. Back-pointers are kept per step; the n-best hypotheses are rebuilt, with their
attention, at the end.

Two stopping rules (``stopping``):

* ``exact``: exact under the length penalty lp(L) = ((5+L)/6)^α. A live
  hypothesis's log-probability can only fall, so the best normalised score it
  can still reach is ``logp / lp(max_len)``. A sentence stops once its n-th
  best finished hypothesis beats that bound for every live one.
* ``first``: the rule of OpenNMT-py. A sentence also stops as soon
  as its best candidate of a step ends in ``</s>`` (once it has n finished).
  The bound above is loose, so ``exact`` often searches on long after the
  answer is known; ``first`` takes fewer steps and can miss a later, better
  hypothesis.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from regard.data.tokenizer import BOS, EOS, PAD
from regard.model.base import EncoderDecoder, SearchState
from regard.search.common import STOPPING, Hypothesis, check_nbest, length_penalty, max_lengths, row_candidates


@dataclass
class History:
    """Back-pointers. At step t, slot i holds token ``tokens[t][i]`` continuing input row
    ``parents[t][i]``; the input rows of step t+1 are the slots ``kept[t]`` of step t
    (every slot when None: sentences that finish leave the batch)."""

    tokens: list[torch.Tensor]
    parents: list[torch.Tensor]
    kept: list[torch.Tensor | None]
    weights: list[torch.Tensor | None]

    def as_lists(self) -> History:
        """The same history with plain lists of ints, and the weights on the CPU, for fast rebuilding."""
        lists = lambda ts: [t.tolist() if t is not None else None for t in ts]  # noqa: E731
        weights = [w.cpu() if w is not None else None for w in self.weights]  # no copy on the CPU
        return History(lists(self.tokens), lists(self.parents), lists(self.kept), weights)

    def rebuild(self, t: int, slot: int, src_len: int) -> tuple[list[int], torch.Tensor | None]:
        """Tokens (ending in ``</s>`` at step t) and attention (t+1, …, src_len) of one hypothesis."""
        tokens, rows = [], []
        for s in range(t, -1, -1):
            parent = self.parents[s][slot]
            tokens.append(self.tokens[s][slot])
            if self.weights[s] is not None:
                rows.append(self.weights[s][parent, ..., :src_len])
            slot = parent if s == 0 or self.kept[s - 1] is None else self.kept[s - 1][parent]
        attention = torch.stack(rows[::-1]).float() if rows else None
        return tokens[::-1], attention


@torch.no_grad()
def beam_search(model: EncoderDecoder, src: torch.Tensor, src_lengths: torch.Tensor, beam: int = 5,
                nbest: int = 1, alpha: float = 1.0, max_ratio: float = 2.0,
                stopping: str = "exact", attention: str = "layer") -> list[list[Hypothesis]]:
    """src (B, S), src_lengths (B,) → per sentence, its ``nbest`` hypotheses, best first, with
    ``attention`` (see :mod:`regard.model.base`)."""
    check_nbest(nbest, beam)
    if stopping not in STOPPING:
        raise ValueError(f"stopping must be one of {', '.join(STOPPING)}, got {stopping!r}")
    B, K, device = src.shape[0], beam, src.device
    # the encoder output is kept once per sentence, shared by its hypotheses; one row
    # (hypothesis) per sentence until the first step's K
    state = model.start(src, src_lengths, attention)
    limit = max_lengths(src_lengths, max_ratio)
    scores = torch.zeros(B, 1, device=device)  # (sentences, rows per sentence): log-probabilities of the live rows
    prev = torch.full((B,), BOS, dtype=torch.long, device=device)
    history = History([], [], [], [])
    found: list[list[tuple[float, int, int]]] = [[] for _ in range(B)]  # (score, step, slot)
    nth_best = torch.full((B,), float("-inf"), device=device)  # n-th best finished score per sentence
    bound_lp = length_penalty(limit + 1, alpha).float()  # lp of the longest possible output
    alive = torch.arange(B, device=device)  # the sentences still searched, in row order
    for t in range(int(limit.max()) + 1):
        n, G = scores.shape
        must_end = (limit[alive] <= t).repeat_interleave(G)
        log_probs, words, state, weights = advance(model, prev, state, scores.view(-1), K, must_end)
        top_scores, top_index = best_of_sentence(scores.view(-1, 1) + log_probs, n, K)  # (n, K)
        k = log_probs.shape[1]
        parents = (top_index // k + torch.arange(n, device=device).unsqueeze(1) * G).view(-1)
        prev = words.view(n, G * k).gather(1, top_index).view(-1)
        history.tokens.append(prev)
        history.parents.append(parents)
        history.weights.append(weights)
        ended = (prev.view(n, K) == EOS) & (top_scores > float("-inf"))
        for b, j in ended.nonzero().tolist():
            g = int(alive[b])
            found[g].append((float(top_scores[b, j]) / length_penalty(t + 1, alpha), t, b * K + j))
            if len(found[g]) >= nbest:
                nth_best[g] = sorted(found[g], reverse=True)[nbest - 1][0]
        scores = top_scores.masked_fill(ended, float("-inf"))
        best_live = scores.max(dim=1).values
        # a sentence is done when nothing is live, or no live hypothesis can still enter its n-best
        done = (best_live == float("-inf")) | (nth_best[alive] >= best_live / bound_lp[alive])
        if stopping == "first":  # or: the step's best candidate has ended, and the n-best is full
            done |= ended[:, 0] & (nth_best[alive] > float("-inf"))
        if done.all():
            break
        if done.any():  # finished sentences leave the batch
            keep = (~done).nonzero().squeeze(1)
            slots = (keep.unsqueeze(1) * K + torch.arange(K, device=device)).view(-1)
            alive, scores, prev = alive[keep], scores[keep], prev[slots]
            state = state.reorder(parents[slots], keep)
            history.kept.append(slots)
        else:
            state = state.reorder(parents)
            history.kept.append(None)
    history = history.as_lists()
    return [_best(history, found[b], nbest, n) for b, n in enumerate(src_lengths.tolist())]


def advance(model: EncoderDecoder, prev: torch.Tensor, state: SearchState, scores: torch.Tensor, k: int,
            must_end: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, SearchState, torch.Tensor | None]:
    """One decoder step from tokens ``prev`` (N,) → the k likeliest next words of every row,
    log-probs (N, k) and words (N, k), with the new state and attention weights (N, …, S).

    The output layer and softmax, half of a step, run only on the live rows: those whose
    ``scores`` (N,) are finite. A hypothesis that has just ended keeps its row for one step
    (about 4 % of all rows); dead rows get -inf.
    """
    live = scores > float("-inf")
    if bool(live.all()):
        logits, weights, state = model.step(state, prev)
        return *row_candidates(logits, k, must_end), state, weights
    rows = live.nonzero().squeeze(1)
    logits, weights, state = model.step(state, prev, rows)
    log_probs, words = row_candidates(logits, k, must_end[rows])
    shape = (len(scores), log_probs.shape[1])
    log_probs = log_probs.new_full(shape, float("-inf")).index_copy_(0, rows, log_probs)
    return log_probs, words.new_full(shape, PAD).index_copy_(0, rows, words), state, weights


def best_of_sentence(candidates: torch.Tensor, n: int, K: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Candidate scores (n·G, k) → the K best of each sentence's G·k and their positions, (n, K) each.

    Slots beyond a sentence's G·k candidates (a vocabulary smaller than the beam) stay dead."""
    flat = candidates.view(n, -1)
    top_scores, top_index = flat.topk(min(K, flat.shape[1]), dim=1)
    if top_scores.shape[1] < K:
        missing = K - top_scores.shape[1]
        top_scores = torch.nn.functional.pad(top_scores, (0, missing), value=float("-inf"))
        top_index = torch.nn.functional.pad(top_index, (0, missing))
    return top_scores, top_index


def _best(history: History, found: list[tuple[float, int, int]], nbest: int, src_len: int) -> list[Hypothesis]:
    hyps = []
    for score, t, slot in sorted(found, key=lambda f: -f[0])[:nbest]:
        tokens, attention = history.rebuild(t, slot, src_len)
        hyps.append(Hypothesis(tokens[:-1], score, attention))
    return hyps
