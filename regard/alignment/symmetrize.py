"""Combining the links of two directions (Och & Ney 2003; Koehn et al. 2003).

Both inputs are in the same orientation, ``(source word, target word)``: transpose the
links of the reverse model (:func:`regard.alignment.links.transpose`) before calling.
"""

from __future__ import annotations

from typing import Callable

from regard.alignment.links import Link

NEIGHBOURS = [(-1, 0), (0, -1), (1, 0), (0, 1), (-1, -1), (-1, 1), (1, -1), (1, 1)]


def intersection(forward: set[Link], backward: set[Link]) -> set[Link]:
    """Links both directions agree on: high precision."""
    return forward & backward


def union(forward: set[Link], backward: set[Link]) -> set[Link]:
    """Links either direction has: high recall."""
    return forward | backward


def grow_diag(forward: set[Link], backward: set[Link]) -> set[Link]:
    """Start from the intersection and repeatedly add union links next to (also diagonally)
    a chosen link, when one of their two words is still unaligned."""
    links, candidates = forward & backward, forward | backward
    grown = True
    while grown:
        grown = False
        for i, j in sorted(links):
            for di, dj in NEIGHBOURS:
                new = (i + di, j + dj)
                if new in candidates and new not in links and not _both_aligned(links, new):
                    links.add(new)
                    grown = True
    return links


def grow_diag_final_and(forward: set[Link], backward: set[Link]) -> set[Link]:
    """:func:`grow_diag`, then add each direction's links whose two words are both still
    unaligned (the "final-and" step), forward first."""
    links = grow_diag(forward, backward)
    for direction in (forward, backward):
        for link in sorted(direction):
            if not _src_aligned(links, link[0]) and not _tgt_aligned(links, link[1]):
                links.add(link)
    return links


def _src_aligned(links: set[Link], i: int) -> bool:
    return any(a == i for a, _ in links)


def _tgt_aligned(links: set[Link], j: int) -> bool:
    return any(b == j for _, b in links)


def _both_aligned(links: set[Link], link: Link) -> bool:
    return _src_aligned(links, link[0]) and _tgt_aligned(links, link[1])


SYMMETRIZATIONS: dict[str, Callable[[set[Link], set[Link]], set[Link]]] = {
    "intersection": intersection, "union": union, "grow-diag": grow_diag,
    "grow-diag-final-and": grow_diag_final_and}


def symmetrize(forward: set[Link], backward: set[Link], method: str = "grow-diag-final-and") -> set[Link]:
    """The links that ``method`` (a key of :data:`SYMMETRIZATIONS`) keeps of the two directions."""
    if method not in SYMMETRIZATIONS:
        raise ValueError(f"unknown symmetrization {method!r}: choose from {', '.join(SYMMETRIZATIONS)}")
    return SYMMETRIZATIONS[method](set(forward), set(backward))
