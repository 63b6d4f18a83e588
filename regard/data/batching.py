"""Token-budget batches with length bucketing, planned from the lengths alone.

Sentences are sorted by target then source length (ties in random order, per epoch) and
cut into batches whose padded target size stays under a token budget, so batches hold
sentences of nearly equal length and little padding. The batch order is then shuffled.
Everything depends only on ``(seed, epoch)``, so a resumed run can rebuild the same epoch
and skip to the batch where it stopped.

:func:`plan_epoch` works on numpy arrays of lengths (the index of a prepared corpus) with a
counting sort and arithmetic cuts: no Python object per sentence, so tens of millions of
pairs cost a few bytes each. :func:`batch_indices` is the same plan for a list of
:class:`Example` s (validation data, tools).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from regard.data.encoding import Example
from regard.data.tokenizer import BOS, EOS, PAD

_CHUNK = 1 << 18  # sentences sorted at a time by the counting sort


@dataclass
class Batch:
    """Padded tensors for one training step.

    src: (B, S) source ids, PAD after each sentence's length
    src_lengths: (B,) true source lengths
    tgt_in: (B, T) ``<s> y_1 … y_n`` decoder inputs
    tgt_out: (B, T) ``y_1 … y_n </s>`` decoder targets, PAD beyond
    guide: (B, T, S) float32 guided-alignment targets of the attention (:mod:`regard.data.guides`),
        or None (not guided)
    """

    src: torch.Tensor
    src_lengths: torch.Tensor
    tgt_in: torch.Tensor
    tgt_out: torch.Tensor
    guide: torch.Tensor | None = None

    @classmethod
    def from_numpy(cls, src: np.ndarray, src_lengths: np.ndarray, tgt_in: np.ndarray, tgt_out: np.ndarray) -> Batch:
        """A batch of int64 arrays (shapes as the fields'), sharing their memory."""
        return cls(*(torch.from_numpy(a) for a in (src, src_lengths, tgt_in, tgt_out)))

    @property
    def n_tokens(self) -> int:
        """Real (non-pad) target tokens."""
        return int((self.tgt_out != PAD).sum())

    def to(self, device: torch.device) -> Batch:
        """The same batch on ``device`` (itself when already there)."""
        if self.src.device == device:
            return self
        move = lambda t: t.to(device, non_blocking=True)  # noqa: E731
        guide = move(self.guide) if self.guide is not None else None
        return Batch(move(self.src), self.src_lengths, move(self.tgt_in), move(self.tgt_out), guide)


def pad(seqs: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-pad id lists → ``(B, max_len)`` tensor and ``(B,)`` lengths."""
    lengths = torch.tensor([len(s) for s in seqs], dtype=torch.long)
    out = torch.full((len(seqs), max(1, int(lengths.max()))), PAD, dtype=torch.long)
    for row, seq in enumerate(seqs):
        out[row, : len(seq)] = torch.tensor(seq, dtype=torch.long)
    return out, lengths


def collate(examples: list[Example]) -> Batch:
    """Examples → a padded :class:`Batch`."""
    src, src_lengths = pad([e.src for e in examples])
    tgt_in, _ = pad([[BOS] + e.tgt for e in examples])
    tgt_out, _ = pad([e.tgt + [EOS] for e in examples])
    return Batch(src, src_lengths, tgt_in, tgt_out)


@dataclass
class EpochPlan:
    """One epoch's batches: batch ``k`` is ``order[starts[b]:ends[b]]`` for ``b = sequence[k]``.

    order: (N,) sentence indices, sorted by (target, source) length, ties shuffled
    starts, ends: (n_batches,) where each batch lies in ``order``
    sequence: (n_batches,) the shuffled batch order
    """

    order: np.ndarray
    starts: np.ndarray
    ends: np.ndarray
    sequence: np.ndarray

    def __len__(self) -> int:
        return len(self.sequence)

    def batch(self, k: int) -> np.ndarray:
        """(B,) the sentence indices of the ``k``-th batch of the epoch."""
        b = self.sequence[k]
        return self.order[self.starts[b]:self.ends[b]]


def plan_epoch(src_len: np.ndarray, tgt_len: np.ndarray, batch_tokens: int, seed: int, epoch: int) -> EpochPlan:
    """The batches of one epoch over sentences of lengths ``src_len``, ``tgt_len`` (both (N,)).

    A batch's cost is ``n_sentences × (longest target + 1)``; it never exceeds
    ``batch_tokens`` unless a single sentence does. Deterministic in ``(seed, epoch)``.
    """
    rng = np.random.default_rng([seed, epoch])
    order, tgt_counts = bucket_order(np.asarray(src_len), np.asarray(tgt_len), rng)
    starts, ends = cut(tgt_counts, batch_tokens)
    return EpochPlan(order, starts, ends, rng.permutation(len(starts)))


def bucket_order(src_len: np.ndarray, tgt_len: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Indices sorted by (target, source) length with ties in random order, and the (T+1,)
    count of sentences of each target length. A counting sort, a chunk at a time: its only
    array of N elements is the result (int32 below 2**31 sentences)."""
    n = len(tgt_len)
    width = int(src_len.max(initial=0)) + 1
    n_keys = (int(tgt_len.max(initial=0)) + 1) * width
    key = lambda a, b: tgt_len[a:b].astype(np.int64) * width + src_len[a:b]  # noqa: E731
    counts = np.zeros(n_keys, dtype=np.int64)
    for a in range(0, n, _CHUNK):
        counts += np.bincount(key(a, a + _CHUNK), minlength=n_keys)
    ends = np.cumsum(counts)
    free = ends - counts  # the next free place of each key
    order = np.empty(n, dtype=np.int32 if n < 2**31 else np.int64)
    for a in range(0, n, _CHUNK):
        k = key(a, a + _CHUNK)
        srt = np.argsort(k, kind="stable")
        ks = k[srt]
        rank = np.arange(len(ks)) - np.searchsorted(ks, ks, side="left")  # place among equal keys
        order[free[ks] + rank] = srt + a
        free += np.bincount(k, minlength=n_keys)
    for b in np.flatnonzero(counts > 1):
        rng.shuffle(order[ends[b] - counts[b]:ends[b]])
    return order, counts.reshape(-1, width).sum(axis=1)


def cut(tgt_counts: np.ndarray, batch_tokens: int) -> tuple[np.ndarray, np.ndarray]:
    """Where the greedy token-budget cut of the sorted sentences falls: ``(starts, ends)``.

    The rule, one sentence at a time in order: a sentence starts a new batch when adding it
    would take the batch over ``batch_tokens`` (``(its target length + 1) × sentences``);
    here computed per target length, since all sentences of one length fit alike.
    """
    bounds: list[np.ndarray] = []
    pos = current = 0  # sentences placed, and those in the open batch
    for length, count in enumerate(tgt_counts.tolist()):
        if not count:
            continue
        cap = batch_tokens // (length + 1)  # most sentences of this length a batch can hold
        if current:
            take = min(count, max(0, cap - current))
            pos, current, count = pos + take, current + take, count - take
            if count:
                bounds.append(np.array([pos]))
                current = 0
        if count:
            size = max(1, cap)
            n_batches = -(-count // size)
            bounds.append(pos + size * np.arange(1, n_batches))
            pos, current = pos + count, count - size * (n_batches - 1)
    ends = np.concatenate(bounds + [np.array([pos] if current else [], dtype=np.int64)]).astype(np.int64)
    starts = np.zeros_like(ends)
    starts[1:] = ends[:-1]
    return starts, ends


def batch_indices(examples: list[Example], batch_tokens: int, seed: int, epoch: int) -> list[list[int]]:
    """:func:`plan_epoch` for a list of examples: index lists, one per batch, in epoch order."""
    src = np.array([len(e.src) for e in examples], dtype=np.int64)
    tgt = np.array([len(e.tgt) for e in examples], dtype=np.int64)
    plan = plan_epoch(src, tgt, batch_tokens, seed, epoch)
    return [plan.batch(k).tolist() for k in range(len(plan))]
