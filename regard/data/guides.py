"""Guides for guided alignment: word links spread over the subwords of a batch.

A link ``(i, j)`` joins source word ``i`` and target word ``j`` of a training pair, words
being what its text has between spaces. Subwords are grouped into words as
:meth:`regard.data.tokenizer.Tokenizer.words` groups them: a piece starting with ``▁`` opens
a word, and the first piece always does. Target subword t's row of the guide spreads 1
evenly over the source subwords of the words its word is linked to; the rows of unlinked
words, of ``</s>`` and of padding stay 0 (they are not guided). numpy only.
"""

from __future__ import annotations

import numpy as np

from regard.data.tokenizer import EOS, PAD


def word_of_piece(ids: np.ndarray, word_starts: np.ndarray) -> np.ndarray:
    """The word of each subword: ids (…, n) → (…, n) int64 word indices along the last axis;
    ``word_starts`` (V,) bool: the pieces that open a word
    (:meth:`~regard.data.tokenizer.Tokenizer.word_starts`)."""
    opens = word_starts[ids]  # a copy
    opens[..., :1] = True
    return np.cumsum(opens, axis=-1) - 1


def pair_guide(links: np.ndarray, src_words: np.ndarray, tgt_words: np.ndarray) -> np.ndarray:
    """The (T, S) float32 guide of one pair: ``links`` (K, 2) (source word, target word),
    ``src_words`` (S,) and ``tgt_words`` (T,) the word of each subword."""
    src_words, tgt_words = np.asarray(src_words, dtype=np.int64), np.asarray(tgt_words, dtype=np.int64)
    return guides([np.asarray(links)], src_words[None], tgt_words[None],
                  np.ones((1, len(src_words)), dtype=bool), np.ones((1, len(tgt_words)), dtype=bool))[0]


def guides(links: list[np.ndarray], src_words: np.ndarray, tgt_words: np.ndarray, src_real: np.ndarray,
           tgt_real: np.ndarray) -> np.ndarray:
    """The (B, T, S) float32 guides of B pairs, all at once.

    links: each pair's (k, 2) (source word, target word) links
    src_words (B, S), tgt_words (B, T): the word of each subword (any word where not real)
    src_real (B, S), tgt_real (B, T): the subwords that are guided (not padding, not ``</s>``)

    Links naming a word the pair's subwords do not have are left out.
    """
    B = len(links)
    src_words, tgt_words = np.where(src_real, src_words, 0), np.where(tgt_real, tgt_words, 0)
    n_src = np.where(src_real, src_words + 1, 0).max(axis=1, initial=0)  # (B,) words of each side
    n_tgt = np.where(tgt_real, tgt_words + 1, 0).max(axis=1, initial=0)
    words = np.zeros((B, int(n_tgt.max(initial=0)) + 1, int(n_src.max(initial=0)) + 1), dtype=np.float32)
    rows = np.repeat(np.arange(B), [len(x) for x in links])
    flat = np.concatenate([np.asarray(x, dtype=np.int64).reshape(-1, 2) for x in links] or [np.zeros((0, 2), int)])
    inside = (flat[:, 0] < n_src[rows]) & (flat[:, 1] < n_tgt[rows])
    words[rows[inside], flat[inside, 1], flat[inside, 0]] = 1.0
    pieces = words[np.arange(B)[:, None, None], tgt_words[:, :, None], src_words[:, None, :]]  # (B, T, S)
    pieces *= tgt_real[:, :, None] & src_real[:, None, :]
    total = pieces.sum(axis=2, keepdims=True)
    return np.divide(pieces, total, out=np.zeros_like(pieces), where=total > 0)


def batch_guide(src: np.ndarray, tgt_out: np.ndarray, links: list[np.ndarray],
                word_starts: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    """The (B, T, S) float32 guide of a batch, matching the decoder's attention over it.

    src (B, S) and tgt_out (B, T) as :class:`~regard.data.batching.Batch` holds them (PAD
    after each sentence; tgt_out ends each sentence with ``</s>``, whose row stays 0);
    ``links``: each pair's (k, 2) links; ``word_starts``: the source and target tables of
    :func:`word_of_piece`.
    """
    src_real = src != PAD
    tgt_real = (tgt_out != PAD) & (tgt_out != EOS)
    return guides(links, word_of_piece(src, word_starts[0]), word_of_piece(tgt_out, word_starts[1]),
                  src_real, tgt_real)
