"""Several model folders loaded as one :class:`~regard.model.ensemble.Ensemble`.

The members average their log-probabilities over the same target subwords, so they must share
the target SentencePiece model; they also read one encoding of the source, so they must share
the source one too. Models trained by recipes with the same data and tokenizer settings do
(SentencePiece training is deterministic). Anything else is a one-line :class:`RegardError`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from regard.checkpoint import load_model_dir
from regard.config import Config
from regard.data.tokenizer import Tokenizer
from regard.errors import RegardError
from regard.model.base import EncoderDecoder
from regard.model.ensemble import Ensemble


def check_same_subwords(paths: Sequence[str | Path], tokenizers: Sequence[tuple[Tokenizer, Tokenizer]]) -> None:
    """Raise :class:`RegardError` unless every model's (source, target) subword models are the first's."""
    first_src, first_tgt = tokenizers[0]
    for path, (src, tgt) in zip(paths[1:], tokenizers[1:]):
        for side, mine, theirs in (("target", tgt, first_tgt), ("source", src, first_src)):
            if mine.proto != theirs.proto:
                raise RegardError(f"cannot ensemble {paths[0]} and {path}: their {side} subword models differ "
                                  f"(an ensemble needs models trained with the same {side} SentencePiece model)")


def load_models(paths: Sequence[str | Path]) -> tuple[EncoderDecoder, Config, Tokenizer, Tokenizer]:
    """One model folder as itself, several as an ensemble; the config and tokenizers are the first's."""
    loaded = [load_model_dir(path) for path in paths]
    model, cfg, src_tok, tgt_tok = loaded[0]
    if len(loaded) == 1:
        return model, cfg, src_tok, tgt_tok
    check_same_subwords(paths, [(s, t) for _, _, s, t in loaded])
    return Ensemble([m for m, *_ in loaded]).eval(), cfg, src_tok, tgt_tok
