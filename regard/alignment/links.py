"""Word links from attention, and the Pharaoh text format.

A link ``(i, j)`` joins source word ``i`` and target word ``j`` (0-based). The Pharaoh
format writes a sentence's links as ``i-j`` pairs separated by spaces, one line per
sentence pair, as fast_align, eflomal and Moses do.
"""

from __future__ import annotations

from typing import Callable, Literal

Link = tuple[int, int]  # (source word, target word), 0-based
Matrix = list[list[float]]  # (target words, source words) attention, rows summing to 1
Rule = Literal["argmax", "threshold", "both"]

DEFAULT_THRESHOLD = 0.3


def argmax_links(weights: Matrix, threshold: float = DEFAULT_THRESHOLD) -> set[Link]:
    """Each target word linked to the source word it attends to most."""
    return {(max(range(len(row)), key=row.__getitem__), j) for j, row in enumerate(weights) if row}


def threshold_links(weights: Matrix, threshold: float = DEFAULT_THRESHOLD) -> set[Link]:
    """Every (source, target) word pair whose weight is at least ``threshold``."""
    return {(i, j) for j, row in enumerate(weights) for i, w in enumerate(row) if w >= threshold}


def both_links(weights: Matrix, threshold: float = DEFAULT_THRESHOLD) -> set[Link]:
    """The argmax links and the threshold links together: every target word gets a link,
    and a word split between two source words gets both."""
    return argmax_links(weights) | threshold_links(weights, threshold)


RULES: dict[str, Callable[[Matrix, float], set[Link]]] = {
    "argmax": argmax_links, "threshold": threshold_links, "both": both_links}
RULE_HELP = ("how links are read off the attention: argmax (each target word to the source word "
             "it attends to most), threshold (every pair with weight ≥ --threshold), or both")


def extract(weights: Matrix, rule: str = "argmax", threshold: float = DEFAULT_THRESHOLD) -> set[Link]:
    """The links that ``rule`` (a key of :data:`RULES`) reads off a word attention matrix."""
    if rule not in RULES:
        raise ValueError(f"unknown rule {rule!r}: choose from {', '.join(RULES)}")
    return RULES[rule](weights, threshold)


def transpose(links: set[Link]) -> set[Link]:
    """Links of the reverse direction: ``(i, j)`` becomes ``(j, i)``."""
    return {(j, i) for i, j in links}


def format_pharaoh(links: set[Link]) -> str:
    """``{(0, 0), (2, 1)}`` → ``"0-0 2-1"`` (sorted by source, then target word)."""
    return " ".join(f"{i}-{j}" for i, j in sorted(links))


def parse_pharaoh(line: str) -> set[Link]:
    """``"0-0 2-1"`` → ``{(0, 0), (2, 1)}``; ValueError on a malformed pair.

    ``i-j`` and ``i?j`` (a possible link, as some gold sets write it) are both read.
    """
    links = set()
    for pair in line.split():
        sep = "-" if "-" in pair else "?"
        left, _, right = pair.partition(sep)
        if not (left.isdigit() and right.isdigit()):
            raise ValueError(f"malformed link {pair!r}: expected i-j with non-negative integers")
        links.add((int(left), int(right)))
    return links
