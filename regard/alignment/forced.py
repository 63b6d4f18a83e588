"""A model's attention over a given translation (forced decoding), reported on given tokens.

The target is teacher-forced, so the attention is the model's answer to "which source words
explain this target word?" for a translation the model did not choose. Each side goes
through :func:`~regard.alignment.detok.detokenize` (given tokens → the model's own text),
the model's subwords, and back: links are found between units (the fewest subwords and given
tokens that cover each other, :func:`~regard.alignment.detok.piece_units`) and reported on the
given tokens.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from regard.alignment.detok import detokenize, piece_units, tokens_of_words
from regard.alignment.links import DEFAULT_THRESHOLD, Link, Matrix, extract, format_pharaoh
from regard.data.batching import Example, collate
from regard.data.text import normalize
from regard.data.tokenizer import UNK, Tokenizer


@dataclass(frozen=True)
class Side:
    """One sentence as given tokens and as the model sees it."""

    tokens: list[str]
    ids: list[int]  # the model's subwords
    unit_of_piece: list[int]  # the unit of each subword
    unit_of_token: list[int]  # the unit of each given token
    unknown: int  # given tokens with a subword the model does not know

    @classmethod
    def read(cls, tok: Tokenizer, tokens: list[str], language: str, capitalize: bool) -> Side:
        text = detokenize([normalize(t) for t in tokens], language, capitalize)
        ids, spans = tok.encode_with_spans(text.text)
        unit_of_piece = piece_units(spans, text.spans)
        unit_spans: list[tuple[int, int]] = []  # each unit's characters
        for (start, end), u in zip(spans, unit_of_piece):
            if u == len(unit_spans):
                unit_spans.append((start, end))
            unit_spans[u] = (unit_spans[u][0], end)
        unit_of_token = tokens_of_words(text.spans, unit_spans)
        unknown_units = {u for i, u in zip(ids, unit_of_piece) if i == UNK}
        return cls(tokens, ids, unit_of_piece, unit_of_token,
                   sum(u in unknown_units for u in unit_of_token))


@dataclass
class Alignment:
    """One sentence pair's links and attention on the given tokens.

    ``weights`` is (target tokens × source tokens); a unit made of several given tokens
    ("du" for "de le") shares its weight equally among them, so rows still sum to 1.
    """

    source_tokens: list[str]
    target_tokens: list[str]
    links: set[Link]
    weights: Matrix
    unknown_source: int = 0
    unknown_target: int = 0

    def to_dict(self) -> dict:
        return {"source_tokens": self.source_tokens, "target_tokens": self.target_tokens,
                "links": format_pharaoh(self.links), "weights": self.weights,
                "unknown_source": self.unknown_source, "unknown_target": self.unknown_target}


def align_pairs(translator, sources: list[list[str]], targets: list[list[str]], rule: str = "argmax",
                threshold: float = DEFAULT_THRESHOLD, src_lang: str = "none", tgt_lang: str = "none",
                capitalize: bool = False, batch_size: int = 64) -> list[Alignment]:
    """Links and attention for each (source tokens, target tokens) pair, with ``translator``'s model."""
    attended = attend_pairs(translator, sources, targets, src_lang, tgt_lang, capitalize, batch_size)
    return [on_tokens(s, t, w, rule, threshold) for s, t, w in attended]


def attend_pairs(translator, sources: list[list[str]], targets: list[list[str]], src_lang: str = "none",
                 tgt_lang: str = "none", capitalize: bool = False,
                 batch_size: int = 64) -> list[tuple[Side, Side, Matrix]]:
    """Each pair's two :class:`Side` and its (target × source) unit attention, for
    :func:`on_tokens` to read links from with any rule."""
    if not translator.has_attention:
        from regard.errors import RegardError
        raise RegardError("this model has no attention (attention: none): it cannot align words")
    src = [Side.read(translator.src_tok, s, src_lang, capitalize) for s in sources]
    tgt = [Side.read(translator.tgt_tok, t, tgt_lang, capitalize) for t in targets]
    return list(zip(src, tgt, forced_word_attention(translator, src, tgt, batch_size)))


def forced_word_attention(translator, src: list[Side], tgt: list[Side], batch_size: int) -> list[Matrix]:
    """(target units × source units) teacher-forced attention of each pair."""
    from regard.translator import word_attention
    out: list[Matrix] = [[] for _ in src]
    order = sorted((k for k in range(len(src)) if src[k].ids and tgt[k].ids), key=lambda k: len(src[k].ids))
    for start in range(0, len(order), batch_size):
        chunk = order[start:start + batch_size]
        batch = collate([Example(src[k].ids, tgt[k].ids) for k in chunk]).to(translator.device)
        with torch.inference_mode():
            _, attention = translator.model(batch)  # (B, T + 1, S): the last row is </s>'s
        for row, k in enumerate(chunk):
            pieces = attention[row, : len(tgt[k].ids), : len(src[k].ids)].float().tolist()
            out[k] = word_attention(pieces, src[k].unit_of_piece, tgt[k].unit_of_piece)
    return out


def on_tokens(src: Side, tgt: Side, units: Matrix, rule: str, threshold: float) -> Alignment:
    """Links found between units, and the attention, spread back onto the given tokens."""
    if not units:
        return Alignment(src.tokens, tgt.tokens, set(), [[0.0] * len(src.tokens) for _ in tgt.tokens],
                         src.unknown, tgt.unknown)
    share = [src.unit_of_token.count(u) for u in src.unit_of_token]
    weights = [[units[tu][su] / n for su, n in zip(src.unit_of_token, share)] for tu in tgt.unit_of_token]
    unit_links = extract(units, rule, threshold)
    links = {(i, j) for i, su in enumerate(src.unit_of_token) for j, tu in enumerate(tgt.unit_of_token)
             if (su, tu) in unit_links}
    return Alignment(src.tokens, tgt.tokens, links, weights, src.unknown, tgt.unknown)
