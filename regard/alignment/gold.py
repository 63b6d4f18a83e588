"""Reading alignment files: gold links (NAACL 2003) and predicted links (Pharaoh).

Every problem is a :class:`~regard.errors.RegardError` naming the file and line.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from regard.alignment.links import Link, parse_pharaoh
from regard.data.text import decoded_lines
from regard.errors import RegardError


@dataclass
class GoldAlignment:
    """One sentence pair's gold links, 0-based ``(source word, target word)``.

    ``possible`` holds the links marked P only; :mod:`~regard.alignment.score` adds the
    sure ones to it, as the AER convention has it.
    """

    sure: set[Link] = field(default_factory=set)
    possible: set[Link] = field(default_factory=set)


def read_tokens(path: str | Path) -> list[list[str]]:
    """A tokenised text file: one list of space-separated tokens per line."""
    return [line.split() for _, line in decoded_lines(path)]


def read_naacl(path: str | Path, src_lengths: list[int] | None = None, tgt_lengths: list[int] | None = None,
               reverse: bool = False) -> list[GoldAlignment]:
    """Gold links in the NAACL 2003 format: ``sentence source_pos target_pos [S|P]``, 1-based.

    ``src_lengths``/``tgt_lengths``: each sentence's token count, for the bounds check (without
    them the sentences are numbered up to the highest one linked). ``reverse``: the file's
    second column is the target side (the columns are swapped). A link without a label is
    sure, as in the shared task's format.
    """
    links = []
    for number, line in decoded_lines(path):
        if line.strip():
            where = f"{path}:{number}"
            sentence, i, j, label = _fields(line.split(), where)
            i, j = (j, i) if reverse else (i, j)
            if src_lengths is not None:
                _check_bounds(where, sentence, i, j, src_lengths, tgt_lengths)
            links.append((sentence, i - 1, j - 1, label))
    count = len(src_lengths) if src_lengths is not None else max((s for s, *_ in links), default=0)
    gold = [GoldAlignment() for _ in range(count)]
    for sentence, i, j, label in links:
        (gold[sentence - 1].sure if label == "S" else gold[sentence - 1].possible).add((i, j))
    return gold


def _check_bounds(where: str, sentence: int, i: int, j: int, src_lengths: list[int],
                  tgt_lengths: list[int]) -> None:
    if not 1 <= sentence <= len(src_lengths):
        raise RegardError(f"{where}: sentence {sentence} out of range 1–{len(src_lengths)}")
    for pos, lengths, side in ((i, src_lengths, "source"), (j, tgt_lengths, "target")):
        if not 1 <= pos <= lengths[sentence - 1]:
            raise RegardError(f"{where}: {side} position {pos} out of range 1–{lengths[sentence - 1]} "
                              f"of sentence {sentence}")


def _fields(fields: list[str], where: str) -> tuple[int, int, int, str]:
    if len(fields) not in (3, 4):
        raise RegardError(f"{where}: expected 'sentence source_pos target_pos S|P', got {len(fields)} fields")
    label = fields[3] if len(fields) == 4 else "S"
    if label not in ("S", "P"):
        raise RegardError(f"{where}: link label must be S or P, got {label!r}")
    if not all(f.isdigit() and int(f) > 0 for f in fields[:3]):
        raise RegardError(f"{where}: sentence and positions must be positive integers (1-based), "
                          f"got {' '.join(fields[:3])!r}")
    return int(fields[0]), int(fields[1]), int(fields[2]), label


def read_pharaoh(path: str | Path, src_lengths: list[int] | None = None,
                 tgt_lengths: list[int] | None = None) -> list[set[Link]]:
    """Predicted links, one Pharaoh line per sentence pair (``i-j``, 0-based).

    With the sentences' token counts given, the line count and every link are checked too.
    """
    sentences = []
    for number, line in decoded_lines(path):
        try:
            links = parse_pharaoh(line)
        except ValueError as err:
            raise RegardError(f"{path}:{number}: {err}") from None
        if src_lengths is not None and number <= len(src_lengths):
            for i, j in sorted(links):
                if i >= src_lengths[number - 1] or j >= tgt_lengths[number - 1]:
                    raise RegardError(f"{path}:{number}: link {i}-{j} out of range for a sentence pair "
                                      f"of {src_lengths[number - 1]} × {tgt_lengths[number - 1]} words")
        sentences.append(links)
    if src_lengths is not None and len(sentences) != len(src_lengths):
        raise RegardError(f"{path}: {len(sentences)} lines, but the gold has {len(src_lengths)} sentences")
    return sentences
