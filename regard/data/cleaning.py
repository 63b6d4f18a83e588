"""Cleaning parallel text: drop unusable pairs and say how many went, and why.

Pairs are expected already normalised (the readers in :mod:`regard.data.text`
do that), so "exact duplicate" means identical after normalisation. Rules are
applied in the order of :data:`REASONS`; a pair is counted under the first
rule it breaks.
"""

from __future__ import annotations

from typing import Iterable

Pair = tuple[str, str]

REASONS = ("empty side", "too long", "extreme length ratio", "exact duplicate")


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


def clean_pairs(pairs: Iterable[Pair], max_words: int = 80, max_ratio: float = 4.0,
                dedupe: bool = True) -> tuple[list[Pair], dict[str, int]]:
    """Keep the usable pairs, in order.

    Returns ``(kept, report)``; the report counts ``read``, ``kept`` and each
    of :data:`REASONS` (``exact duplicate`` stays 0 when ``dedupe`` is false).
    """
    report = {"read": 0, "kept": 0, **{reason: 0 for reason in REASONS}}
    kept: list[Pair] = []
    seen: set[Pair] = set()
    for src, tgt in pairs:
        report["read"] += 1
        reason = drop_reason(src, tgt, max_words, max_ratio)
        if reason is None and dedupe:
            if (src, tgt) in seen:
                reason = "exact duplicate"
            seen.add((src, tgt))
        if reason:
            report[reason] += 1
        else:
            kept.append((src, tgt))
    report["kept"] = len(kept)
    return kept, report


def format_report(report: dict[str, int], what: str = "pairs") -> str:
    """One line for people: ``cleaning <what>: kept 28995 of 29000 (dropped: 5 exact duplicate)``."""
    dropped = ", ".join(f"{report[r]} {r}" for r in REASONS if report.get(r))
    return (f"cleaning {what}: kept {report['kept']} of {report['read']} "
            f"(dropped: {dropped or 'none'})")
