"""The work on chunks of training pairs that worker processes do while preparing data.

Each callable here pickles (the SentencePiece models travel as bytes and are loaded once per
process) and imports no torch, so a worker starts in a fraction of a second. Validation data
is encoded by the same :meth:`~regard.data.tokenizer.Tokenizer.encode_normalised` and kept by
the same :func:`fits`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from itertools import chain, count
from typing import Any

import numpy as np

from regard.alignment.links import format_pharaoh, parse_pharaoh
from regard.data.cleaning import CheckedChunk, check_chunk
from regard.data.text import decode_line, normalize
from regard.data.tokenizer import Tokenizer
from regard.errors import RegardError


@dataclass
class Example:
    """One sentence pair as subword ids (no BOS/EOS)."""

    src: list[int]
    tgt: list[int]


def fits(src: list[int], tgt: list[int], max_len: int) -> bool:
    """Whether an encoded pair is kept for training: 1 to ``max_len`` subwords on each side."""
    return 0 < len(src) <= max_len and 0 < len(tgt) <= max_len


@dataclass
class RawChunk:
    """Line-aligned, undecoded lines of the two training files (and of their links file, if
    any), from line ``first`` (1-based)."""

    first: int
    src: list[bytes]
    tgt: list[bytes]
    links: list[bytes] | None = None


@dataclass
class CleanLines:
    """Decode, normalise and check one :class:`RawChunk` (in a worker process)."""

    src_name: str
    tgt_name: str
    max_words: int
    max_ratio: float
    dedupe: bool
    links_name: str = ""

    def __call__(self, chunk: RawChunk) -> CheckedChunk:
        pairs = [(normalize(decode_line(s, self.src_name, n)), normalize(decode_line(t, self.tgt_name, n)))
                 for n, s, t in zip(count(chunk.first), chunk.src, chunk.tgt)]
        links = None
        if chunk.links is not None:
            links = [checked_links(decode_line(raw, self.links_name, n), pair, f"{self.links_name}:{n}")
                     for n, raw, pair in zip(count(chunk.first), chunk.links, pairs)]
        return check_chunk(pairs, self.max_words, self.max_ratio, self.dedupe, links)


def checked_links(line: str, pair: tuple[str, str], where: str) -> str:
    """A links line of ``pair`` in the form the spool keeps (sorted Pharaoh text), after checking
    that every link joins words the pair has (its normalised sides split at spaces); the
    error names ``where`` (``FILE:LINE``)."""
    try:
        links = parse_pharaoh(line)
    except ValueError as err:
        raise RegardError(f"{where}: {err}") from None
    n_src, n_tgt = len(pair[0].split()), len(pair[1].split())
    for i, j in sorted(links):
        if i >= n_src or j >= n_tgt:
            side, word, n = ("source", i, n_src) if i >= n_src else ("target", j, n_tgt)
            raise RegardError(f"{where}: link {i}-{j} names {side} word {word}, but the {side} sentence has "
                              f"{n} words: the links file must be line-aligned with the training files")
    return format_pharaoh(links)


@dataclass
class SpoolChunk:
    """Spool lines ``first …`` and which of them are kept (not duplicates)."""

    first: int
    lines: list[str]
    keep: np.ndarray


@dataclass
class EncodedChunk:
    """The pairs of a :class:`SpoolChunk` that fit ``max_len``, encoded.

    src_ids, tgt_ids: (T,) ids of every kept pair, end to end (in the shards' dtype)
    src_len, tgt_len: (n,) int32 lengths
    lines: (n,) int64 the spool line of each pair
    links: (K, 2) int32 (source word, target word) links of every pair, end to end, or None
    link_len: (n,) int32 how many links each pair has, or None
    """

    src_ids: np.ndarray
    src_len: np.ndarray
    tgt_ids: np.ndarray
    tgt_len: np.ndarray
    lines: np.ndarray
    links: np.ndarray | None = None
    link_len: np.ndarray | None = None


@dataclass
class EncodeLines:
    """Encode a :class:`SpoolChunk` with the two SentencePiece models (in a worker process:
    the models travel as bytes and are loaded once per process)."""

    src_proto: bytes
    tgt_proto: bytes
    max_len: int
    ids_dtype: str = "uint32"
    threads: int = -1
    links: bool = False  # the spool lines carry a third field, the pair's links
    _toks: tuple[Tokenizer, Tokenizer] | None = dataclasses.field(default=None, repr=False, compare=False)

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_toks": None}

    def __call__(self, chunk: SpoolChunk) -> EncodedChunk:
        if self._toks is None:
            self._toks = (Tokenizer(self.src_proto), Tokenizer(self.tgt_proto))
        rows = np.flatnonzero(chunk.keep)
        pairs = [chunk.lines[i].split("\t") for i in rows.tolist()]
        src = self._toks[0].encode_normalised([p[0] for p in pairs], self.threads)
        tgt = self._toks[1].encode_normalised([p[1] for p in pairs], self.threads)
        fit = [k for k, (s, t) in enumerate(zip(src, tgt)) if fits(s, t, self.max_len)]
        flat = lambda seqs: np.fromiter(chain.from_iterable(seqs[k] for k in fit), dtype=self.ids_dtype)  # noqa: E731
        lengths = lambda seqs: np.array([len(seqs[k]) for k in fit], dtype=np.int32)  # noqa: E731
        encoded = EncodedChunk(flat(src), lengths(src), flat(tgt), lengths(tgt), chunk.first + rows[fit])
        if self.links:
            encoded.links, encoded.link_len = link_arrays([pairs[k][2] for k in fit])
        return encoded


def link_arrays(lines: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Pharaoh lines as written in the spool (``"0-0 2-1"``) → their (K, 2) int32 links end to
    end and the (n,) int32 count of each line's."""
    pairs = [link.split("-") for line in lines for link in line.split()]
    links = np.array(pairs, dtype=np.int32).reshape(-1, 2)
    return links, np.array([len(line.split()) for line in lines], dtype=np.int32)
