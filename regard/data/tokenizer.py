"""SentencePiece subword tokenisation, trained by Regard and saved with the model.

Ids 0–3 are reserved: ``<pad>``, ``<unk>``, ``<s>`` (begin), ``</s>`` (end).
A piece beginning with ``▁`` (U+2581) starts a new whitespace-separated word,
which is how attention is aggregated from subwords to words.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Iterable

import numpy as np
import sentencepiece as spm

from regard.data.text import normalize
from regard.errors import RegardError

PAD, UNK, BOS, EOS = 0, 1, 2, 3
WORD_START = "\u2581"


def opens_word(piece: str) -> bool:
    """Whether a piece starts a new word (the first piece of a sentence always does)."""
    return piece.startswith(WORD_START)


class Tokenizer:
    """A trained SentencePiece model: text ↔ subword ids, and pieces → words."""

    def __init__(self, model_proto: bytes):
        self.proto = model_proto
        self.sp = spm.SentencePieceProcessor()
        try:
            self.sp.LoadFromSerializedProto(model_proto)
        except Exception as err:  # sentencepiece raises plain RuntimeError/OSError
            raise RegardError(f"corrupt SentencePiece model: {err}") from None

    @classmethod
    def train(cls, sentences: Iterable[str], vocab_size: int, model_type: str = "unigram",
              character_coverage: float = 1.0, max_sentences: int = 500000,
              what: str = "vocabulary size") -> Tokenizer:
        """Train a subword model on normalised sentences (the vocab may end up smaller); a size
        SentencePiece cannot build is a :class:`RegardError` naming ``what`` (the config key)."""
        out = io.BytesIO()
        try:
            spm.SentencePieceTrainer.train(
                sentence_iterator=iter(list(sentences)), model_writer=out, vocab_size=vocab_size,
                model_type=model_type, character_coverage=character_coverage,
                input_sentence_size=max_sentences, shuffle_input_sentence=True,
                pad_id=PAD, unk_id=UNK, bos_id=BOS, eos_id=EOS, hard_vocab_limit=False,
                normalization_rule_name="identity", num_threads=2,
                minloglevel=2)
        except RuntimeError as err:  # its checks, e.g. "Vocabulary size is smaller than required_chars. 20 vs 23."
            reason = " ".join(str(err).split("] ", 1)[-1].split(" Increase ")[0].split())
            raise RegardError(f"{what} {vocab_size}: SentencePiece cannot build it from this text ({reason}); "
                              "raise it, or lower tokenizer.character_coverage") from None
        return cls(out.getvalue())

    @classmethod
    def load(cls, path: str | Path) -> Tokenizer:
        path = Path(path)
        if not path.is_file():
            raise RegardError(f"tokenizer model not found: {path}")
        return cls(path.read_bytes())

    def save(self, path: str | Path) -> None:
        Path(path).write_bytes(self.proto)

    def __len__(self) -> int:
        return self.sp.get_piece_size()

    def encode(self, text: str) -> list[int]:
        """Normalised text → subword ids (no BOS/EOS)."""
        return self.sp.encode(normalize(text), out_type=int)

    def encode_with_spans(self, text: str) -> tuple[list[int], list[tuple[int, int]]]:
        """Subword ids of ``text`` (already normalised) and each piece's ``(start, end)``
        character offsets in it; a piece that starts a word may cover the space before it."""
        proto = self.sp.encode(text, return_type="proto")
        char_of_byte = [k for k, ch in enumerate(text) for _ in range(len(ch.encode("utf-8")))]
        char_of_byte.append(len(text))
        return ([p.id for p in proto.pieces],
                [(char_of_byte[p.begin], char_of_byte[p.end]) for p in proto.pieces])

    def encode_batch(self, texts: list[str], threads: int = -1) -> list[list[int]]:
        """Texts → subword ids (normalised first), on ``threads`` threads (-1: all cores)."""
        return self.encode_normalised([normalize(t) for t in texts], threads)

    def encode_normalised(self, texts: list[str], threads: int = -1) -> list[list[int]]:
        """Already normalised texts → subword ids, on ``threads`` threads (-1: all cores)."""
        return self.sp.encode(texts, out_type=int, num_threads=threads)

    def decode(self, ids: list[int]) -> str:
        """Subword ids → detokenised text (special ids dropped)."""
        return self.sp.decode([i for i in ids if i > EOS])

    def pieces(self, ids: list[int]) -> list[str]:
        return self.sp.id_to_piece(ids) if ids else []

    def words(self, ids: list[int]) -> tuple[list[str], list[int]]:
        """Group subwords into words.

        Returns ``(words, word_of_piece)`` where ``word_of_piece[j]`` is the
        index of the word that piece ``j`` belongs to.
        """
        groups: list[list[int]] = []  # ids of each word
        texts: list[list[str]] = []  # pieces of each word
        word_of_piece: list[int] = []
        for i, piece in zip(ids, self.pieces(ids)):
            if not groups or opens_word(piece):
                groups.append([])
                texts.append([])
            groups[-1].append(i)
            texts[-1].append(piece)
            word_of_piece.append(len(groups) - 1)
        return [self._word(g, t) for g, t in zip(groups, texts)], word_of_piece

    def word_starts(self) -> np.ndarray:
        """(V,) bool: the pieces that open a word, as :meth:`words` groups them."""
        return np.array([opens_word(self.sp.id_to_piece(i)) for i in range(len(self))], dtype=bool)

    def _word(self, ids: list[int], pieces: list[str]) -> str:
        """One word's text. Ordinary pieces decode by joining them, as SentencePiece does
        (without its per-call overhead); special ids go through SentencePiece."""
        text = "".join(pieces).replace(WORD_START, " ").strip() if min(ids) > EOS else self.sp.decode(ids)
        return text or pieces[0]
