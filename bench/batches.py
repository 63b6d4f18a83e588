"""How many real target tokens a batch holds in each toolkit, and matching the peers to Regard.

"Batches of about 2,000 target tokens" means different things to each toolkit:

* Regard: sentences x (longest target + 1) <= 2000, sentences sorted by target length;
* Joey NMT: sentences x max(source + 1, target + 1) >= 2000 closes a batch of sentences in
  random order (no length bucketing, so much of the batch is padding);
* OpenNMT-py: sentences x max(source, target + 2) <= 2000 over sentences sorted by source
  length (then target length).

With the same number 2000, Joey's batches carry about half the real target tokens of
Regard's, which would flatter Regard's tokens/s. ``matched`` batches (the default)
therefore give each peer the batch size whose *real* target tokens per batch (with
``</s>``) are closest to Regard's, found by replaying each sampler on the training
data; ``literal`` uses 2000 for everyone. The measured tokens per step are reported
either way.
"""

from __future__ import annotations

import random
from pathlib import Path
from statistics import mean
from typing import Callable

from regard.data.batching import Example, batch_indices

Lengths = list[tuple[int, int]]  # (source pieces, target pieces), no specials


def read_lengths(src: Path, tgt: Path) -> Lengths:
    with open(src, encoding="utf-8") as s, open(tgt, encoding="utf-8") as t:
        return [(len(a.split()), len(b.split())) for a, b in zip(s, t)]


def regard_tokens(lengths: Lengths, budget: int) -> float:
    """Mean real target tokens (+ ``</s>``) per Regard batch."""
    examples = [Example([0] * s, [0] * t) for s, t in lengths]
    return mean(sum(lengths[i][1] + 1 for i in idx) for idx in batch_indices(examples, budget, seed=1, epoch=0))


def joey_tokens(lengths: Lengths, budget: int) -> float:
    """Mean real target tokens per Joey NMT 2.3 ``TokenBatchSampler`` batch (random order)."""
    order = list(range(len(lengths)))
    random.Random(1).shuffle(order)
    sizes, batch, longest = [], [], 0
    for i in order:
        batch.append(i)
        longest = max(longest, lengths[i][0] + 1, lengths[i][1] + 1)
        if longest * len(batch) >= budget:
            sizes.append(sum(lengths[j][1] + 1 for j in batch))
            batch, longest = [], 0
    return mean(sizes)


def onmt_tokens(lengths: Lengths, budget: int) -> float:
    """Mean real target tokens per OpenNMT-py 3.5 ``batch_iter`` batch (sorted by source, target)."""
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    sizes, batch, longest = [], [], 0
    for i in order:
        batch.append(i)
        longest = max(longest, lengths[i][0], lengths[i][1] + 2)
        if longest * len(batch) >= budget:
            if longest * len(batch) > budget and len(batch) > 1:  # the last one overflowed: it starts the next
                sizes.append(sum(lengths[j][1] + 1 for j in batch[:-1]))
                batch = batch[-1:]
                longest = max(lengths[batch[0]][0], lengths[batch[0]][1] + 2)
            else:
                sizes.append(sum(lengths[j][1] + 1 for j in batch))
                batch, longest = [], 0
    return mean(sizes)


def match_budget(simulate: Callable[[Lengths, int], float], lengths: Lengths, target: float,
                 low: int = 500, high: int = 10000, step: int = 50) -> int:
    """The budget (a multiple of ``step``) whose mean real target tokens per batch are closest to ``target``."""
    while high - low > step:
        middle = (low + high) // 2 // step * step
        if simulate(lengths, middle) < target:
            low = middle
        else:
            high = middle
    return min((low, high), key=lambda b: abs(simulate(lengths, b) - target))


def peer_budgets(src: Path, tgt: Path, budget: int, mode: str) -> dict[str, dict]:
    """Batch size per system and the real target tokens per batch each is expected to give."""
    lengths = read_lengths(src, tgt)
    target = regard_tokens(lengths, budget)
    out = {"regard": {"batch_size": budget, "expected_tgt_tokens_per_step": round(target)}}
    for name, simulate in (("joeynmt", joey_tokens), ("opennmt-py", onmt_tokens)):
        size = match_budget(simulate, lengths, target) if mode == "matched" else budget
        out[name] = {"batch_size": size, "expected_tgt_tokens_per_step": round(simulate(lengths, size))}
    return out
