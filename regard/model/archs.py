"""The architectures by name (``model.arch``), and building one from its config."""

from __future__ import annotations

from regard.config import ModelConfig
from regard.model.base import EncoderDecoder
from regard.model.seq2seq import Seq2Seq
from regard.model.transformer import Transformer

ARCHS: dict[str, type[EncoderDecoder]] = {"rnn": Seq2Seq, "transformer": Transformer}


def build_model(cfg: ModelConfig, src_vocab: int, tgt_vocab: int) -> EncoderDecoder:
    """A freshly initialised model of architecture ``cfg.arch`` (seed torch first for a repeatable one)."""
    return ARCHS[cfg.arch](cfg, src_vocab, tgt_vocab)
