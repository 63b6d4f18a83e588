"""A model's attention over a given translation (forced decoding), reported on given tokens.

The target is teacher-forced, so the attention is the model's answer to "which source words
explain this target word?" for a translation the model did not choose. Each side goes
through :func:`~regard.alignment.detok.detokenize` (given tokens → the model's own text),
the model's subwords, and back: links are found between the model's words and reported on
the given tokens.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from regard.alignment.detok import detokenize, tokens_of_words
from regard.alignment.links import DEFAULT_THRESHOLD, Link, Matrix, extract, format_pharaoh
from regard.data.batching import Example, collate
from regard.data.text import normalize
from regard.data.tokenizer import UNK, Tokenizer


@dataclass(frozen=True)
class Side:
    """One sentence as given tokens and as the model sees it."""

    tokens: list[str]
    ids: list[int]  # the model's subwords
    word_of_piece: list[int]  # the model word of each subword
    word_of_token: list[int]  # the model word of each given token
    unknown: int  # given tokens with a subword the model does not know

    @classmethod
    def read(cls, tok: Tokenizer, tokens: list[str], language: str, capitalize: bool) -> Side:
        text = detokenize([normalize(t) for t in tokens], language, capitalize)
        ids, spans = tok.encode_with_spans(text.text)
        _, word_of_piece = tok.words(ids)
        word_spans: list[tuple[int, int]] = []  # each model word's characters
        for (start, end), w in zip(spans, word_of_piece):
            if w == len(word_spans):
                word_spans.append((start, end))
            word_spans[w] = (word_spans[w][0], end)
        word_of_token = tokens_of_words(text.spans, word_spans)
        unknown_words = {w for i, w in zip(ids, word_of_piece) if i == UNK}
        return cls(tokens, ids, word_of_piece, word_of_token,
                   sum(w in unknown_words for w in word_of_token))


@dataclass
class Alignment:
    """One sentence pair's links and attention on the given tokens.

    ``weights`` is (target tokens × source tokens); a model word made of several given
    tokens shares its weight equally among them, so rows still sum to 1.
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
    """Each pair's two :class:`Side` and its (target × source) model-word attention, for
    :func:`on_tokens` to read links from with any rule."""
    if not translator.has_attention:
        from regard.errors import RegardError
        raise RegardError("this model has no attention (attention: none): it cannot align words")
    src = [Side.read(translator.src_tok, s, src_lang, capitalize) for s in sources]
    tgt = [Side.read(translator.tgt_tok, t, tgt_lang, capitalize) for t in targets]
    return list(zip(src, tgt, forced_word_attention(translator, src, tgt, batch_size)))


def forced_word_attention(translator, src: list[Side], tgt: list[Side], batch_size: int) -> list[Matrix]:
    """(target model words × source model words) teacher-forced attention of each pair."""
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
            out[k] = word_attention(pieces, src[k].word_of_piece, tgt[k].word_of_piece)
    return out


def on_tokens(src: Side, tgt: Side, words: Matrix, rule: str, threshold: float) -> Alignment:
    """Links found between model words, and the attention, spread back onto the given tokens."""
    if not words:
        return Alignment(src.tokens, tgt.tokens, set(), [[0.0] * len(src.tokens) for _ in tgt.tokens],
                         src.unknown, tgt.unknown)
    share = [src.word_of_token.count(w) for w in src.word_of_token]
    weights = [[words[tw][sw] / n for sw, n in zip(src.word_of_token, share)] for tw in tgt.word_of_token]
    word_links = extract(words, rule, threshold)
    links = {(i, j) for i, sw in enumerate(src.word_of_token) for j, tw in enumerate(tgt.word_of_token)
             if (sw, tw) in word_links}
    return Alignment(src.tokens, tgt.tokens, links, weights, src.unknown, tgt.unknown)
