"""Cleaning parallel text: drop unusable pairs and say how many went, and why.

Pairs are expected already normalised (the readers in :mod:`regard.data.text`
do that), so "exact duplicate" means identical after normalisation. Rules are
applied in the order of :data:`REASONS`; a pair is counted under the first
rule it breaks.

Cleaning can stream: pairs go through in chunks (:func:`check_chunk` applies the rules
and computes an 8-byte digest of each survivor, and can run in a worker process), and
:func:`repeated_values` and :class:`FirstOccurrences` find the duplicates from the digests
alone, so memory grows by 8 bytes per pair, not by the text (:mod:`regard.data.binarise`
streams a corpus this way, the digests in a file).
Two different pairs share a digest with a probability of about ``n² / 2**65`` (1 in
100,000 for 20 million pairs): then the second would be dropped as a duplicate.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from itertools import islice
from typing import Iterable, Iterator

import numpy as np

Pair = tuple[str, str]
Report = dict[str, int]

REASONS = ("empty side", "too long", "extreme length ratio", "exact duplicate")
CHUNK = 8192  # pairs checked at a time


def drop_reason(src: str, tgt: str, max_words: int, max_ratio: float) -> str | None:
    """The first of :data:`REASONS` (duplicates aside) that the pair breaks, or None.

    too long: more than ``max_words`` whitespace-separated words on either side
    (0 = no limit). extreme length ratio: the longer side has more than
    ``max_ratio`` times the characters of the shorter (0 = no limit).
    """
    if not src or not tgt:
        return "empty side"
    if max_words and max(len(src.split()), len(tgt.split())) > max_words:
        return "too long"
    if max_ratio and max(len(src), len(tgt)) > max_ratio * min(len(src), len(tgt)):
        return "extreme length ratio"
    return None


def new_report() -> Report:
    """A report with every count at 0: ``read``, ``kept`` and each of :data:`REASONS`."""
    return {"read": 0, "kept": 0, **{reason: 0 for reason in REASONS}}


def pair_digest(src: str, tgt: str) -> int:
    """The 8-byte digest by which :class:`SeenPairs` recognises a pair."""
    return int.from_bytes(hashlib.blake2b(f"{src}\0{tgt}".encode(), digest_size=8).digest(), "little")


@dataclass
class CheckedChunk:
    """A chunk of pairs after the rules: the survivors, their digests and what was dropped.

    hashes: (len(pairs),) uint64 digests of ``pairs`` (empty when not deduplicating)
    links: the word links of each of ``pairs`` (Pharaoh text), or None when the pairs have none
    """

    pairs: list[Pair]
    hashes: np.ndarray
    read: int
    dropped: dict[str, int] = field(default_factory=dict)
    links: list[str] | None = None


def check_chunk(pairs: list[Pair], max_words: int, max_ratio: float, dedupe: bool,
                links: list[str] | None = None) -> CheckedChunk:
    """Apply the rules to a chunk of pairs (duplicates are found afterwards, in order); the
    ``links`` of each pair (if any) stay with the pairs kept."""
    kept: list[Pair] = []
    kept_links: list[str] | None = None if links is None else []
    dropped: dict[str, int] = {}
    for k, (src, tgt) in enumerate(pairs):
        reason = drop_reason(src, tgt, max_words, max_ratio)
        if reason:
            dropped[reason] = dropped.get(reason, 0) + 1
        else:
            kept.append((src, tgt))
            if kept_links is not None:
                kept_links.append(links[k])
    hashes = np.fromiter((pair_digest(s, t) for s, t in kept), dtype=np.uint64, count=len(kept)) if dedupe \
        else np.empty(0, dtype=np.uint64)
    return CheckedChunk(kept, hashes, len(pairs), dropped, kept_links)


def repeated_values(hashes: np.ndarray) -> np.ndarray:
    """The distinct digests that occur more than once in ``hashes`` (N,), sorted. Sorts
    ``hashes`` in place: no memory beyond it but the (usually few) repeated values."""
    hashes.sort()
    return np.unique(hashes[1:][hashes[1:] == hashes[:-1]])


class FirstOccurrences:
    """Marks the first occurrence of every digest, chunk after chunk in stream order, knowing
    only the digests that repeat (:func:`repeated_values`) and a flag for each."""

    def __init__(self, repeated: np.ndarray):
        self.repeated = repeated
        self.seen = np.zeros(len(repeated), dtype=bool)

    def keep(self, hashes: np.ndarray) -> np.ndarray:
        """(N,) bool for the next ``hashes`` (N,) of the stream: False for a digest seen before."""
        keep = np.ones(len(hashes), dtype=bool)
        if not len(self.repeated):
            return keep
        at = np.minimum(np.searchsorted(self.repeated, hashes), len(self.repeated) - 1)
        rows = np.flatnonzero(self.repeated[at] == hashes)  # digests that repeat somewhere
        values = at[rows]
        first = np.zeros(len(rows), dtype=bool)
        first[np.unique(values, return_index=True)[1]] = True  # their first row in this chunk
        keep[rows[~(first & ~self.seen[values])]] = False
        self.seen[values] = True
        return keep


def add_counts(report: Report, chunk: CheckedChunk) -> None:
    """Count a checked chunk's pairs read and dropped by rule into ``report``."""
    report["read"] += chunk.read
    for reason, count in chunk.dropped.items():
        report[reason] += count


def clean_pairs(pairs: Iterable[Pair], max_words: int = 80, max_ratio: float = 4.0,
                dedupe: bool = True) -> tuple[list[Pair], dict[str, int]]:
    """Keep the usable pairs, in order.

    Returns ``(kept, report)``; the report counts ``read``, ``kept`` and each
    of :data:`REASONS` (``exact duplicate`` stays 0 when ``dedupe`` is false).
    """
    report = new_report()
    kept: list[Pair] = []
    hashes: list[np.ndarray] = []
    for chunk in chunked(pairs):
        checked = check_chunk(chunk, max_words, max_ratio, dedupe)
        add_counts(report, checked)
        kept += checked.pairs
        hashes.append(checked.hashes)
    if dedupe:
        digests = np.concatenate(hashes or [np.empty(0, np.uint64)])
        mask = FirstOccurrences(repeated_values(digests.copy())).keep(digests)
        report["exact duplicate"] = len(kept) - int(mask.sum())
        kept = [pair for pair, keep in zip(kept, mask.tolist()) if keep]
    report["kept"] = len(kept)
    return kept, report


def chunked(items: Iterable, size: int = CHUNK) -> Iterator[list]:
    """Lists of ``size`` consecutive items (the last one shorter)."""
    iterator = iter(items)
    while chunk := list(islice(iterator, size)):
        yield chunk


def format_report(report: dict[str, int], what: str = "pairs") -> str:
    """One line for people: ``cleaning <what>: kept 28995 of 29000 (dropped: 5 exact duplicate)``."""
    dropped = ", ".join(f"{report[r]} {r}" for r in REASONS if report.get(r))
    return (f"cleaning {what}: kept {report['kept']} of {report['read']} "
            f"(dropped: {dropped or 'none'})")
