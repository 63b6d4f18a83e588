"""Token-budget batches with length bucketing.

Sentences are sorted by length (ties broken randomly per epoch) and cut into
batches whose padded target size stays under a token budget, so batches hold
sentences of nearly equal length and little padding. The batch order is then
shuffled. Everything depends only on ``(seed, epoch)``, so a resumed run can
rebuild the same epoch and skip to the batch where it stopped.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import torch

from regard.data.tokenizer import BOS, EOS, PAD


@dataclass
class Example:
    """One sentence pair as subword ids (no BOS/EOS)."""

    src: list[int]
    tgt: list[int]


@dataclass
class Batch:
    """Padded tensors for one training step.

    src: (B, S) source ids, PAD after each sentence's length
    src_lengths: (B,) true source lengths
    tgt_in: (B, T) ``<s> y_1 … y_n`` decoder inputs
    tgt_out: (B, T) ``y_1 … y_n </s>`` decoder targets, PAD beyond
    """

    src: torch.Tensor
    src_lengths: torch.Tensor
    tgt_in: torch.Tensor
    tgt_out: torch.Tensor

    @property
    def n_tokens(self) -> int:
        """Real (non-pad) target tokens."""
        return int((self.tgt_out != PAD).sum())

    def to(self, device: torch.device) -> Batch:
        """The same batch on ``device`` (itself when already there)."""
        if self.src.device == device:
            return self
        move = lambda t: t.to(device, non_blocking=True)  # noqa: E731
        return Batch(move(self.src), self.src_lengths, move(self.tgt_in), move(self.tgt_out))


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


def batch_indices(examples: list[Example], batch_tokens: int, seed: int, epoch: int) -> list[list[int]]:
    """Index lists, one per batch, for one epoch (deterministic in seed and epoch).

    A batch's cost is ``n_sentences × (longest target + 1)``; it never exceeds
    ``batch_tokens`` unless a single sentence does.
    """
    rng = random.Random(seed * 1_000_003 + epoch)
    order = list(range(len(examples)))
    rng.shuffle(order)
    order.sort(key=lambda i: (len(examples[i].tgt), len(examples[i].src)))
    batches: list[list[int]] = []
    current: list[int] = []
    for i in order:
        longest = len(examples[i].tgt) + 1  # sorted, so the newest is the longest
        if current and longest * (len(current) + 1) > batch_tokens:
            batches.append(current)
            current = []
        current.append(i)
    if current:
        batches.append(current)
    rng.shuffle(batches)
    return batches
