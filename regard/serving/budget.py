"""The work budget of a translate request, estimated from its subword lengths before any decoding.

A text of ``S`` source subwords may be decoded for up to ``L + 1`` steps, ``L`` the search's
own limit (:func:`regard.search.common.max_lengths`), by ``beam`` rows at once, so its
*work* is ``S + beam × (L + 1)`` subword steps. A model call also costs :data:`STEP_WORK`
per decoding step of its longest text, however few its rows, so a request's work is that of
the calls it is split into (:func:`regard.serving.batcher.split`). Its response holds, per
hypothesis, up to ``L × S`` weights in each subword attention matrix and ``L × W`` in each word
one (``W`` source words; with ``heads``, also every decoder layer's and head's), as JSON numbers
of at most :data:`FLOAT_BYTES`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from regard.search.common import max_lengths
from regard.serving.batcher import split
from regard.serving.errors import ApiError
from regard.serving.settings import ServeSettings
from regard.translator import Translator

# A decoding step's cost beyond its rows, in row-steps: on 2 busy CPU cores, a step of the Multi30k
# models costs as much as 10 to 50 more rows in a batch (their weights are read once a step).
STEP_WORK = 20
FLOAT_BYTES = 24  # one attention weight in JSON with its comma: 17 digits, '.', an exponent such as 'e-05'
PIECE_BYTES = 32  # one subword, quoted, in each list that shows it (tokens, words, text)
ITEM_BYTES = 160  # the field names and scalars of one result or one hypothesis
MB = 1_000_000


@dataclass(frozen=True)
class Cost:
    """What a request asks of the server: per text its ``work`` and most decoding ``steps``; the work
    of its model calls, steps included (``total_work``); and its response's bytes."""

    work: list[int]
    steps: list[int]
    total_work: int
    response_bytes: int


def attention_shape(translator: Translator) -> tuple[int, int]:
    """(decoder layers, heads per layer) whose attention ``heads`` returns: (1, 1) for an RNN."""
    cfg = translator.cfg.model
    return (cfg.decoder_layers, cfg.heads) if cfg.arch == "transformer" else (1, 1)


def matrices(translator: Translator, heads: bool) -> int:
    """Attention matrices of one hypothesis at one level (subword or word): 0 for ``attention: none``."""
    if not translator.has_attention:
        return 0
    layers, per_layer = attention_shape(translator)
    return 1 + (layers * per_layer if heads else 0)


def estimate(translator: Translator, texts: list[str], beam: int, nbest: int, heads: bool,
             call_work: float) -> Cost:
    """The :class:`Cost` of translating ``texts`` with ``translator`` in calls of at most ``call_work``
    (tokenises them, decodes nothing)."""
    ids = translator.src_tok.encode_batch(texts)
    sources = [len(i) for i in ids]
    words = [len(translator.src_tok.words(i)[0]) for i in ids]
    outputs = max_lengths(torch.tensor(sources), translator.cfg.search.max_ratio).tolist()
    steps = [out + 1 for out in outputs]
    work = [s + beam * n for s, n in zip(sources, steps)]
    maps = matrices(translator, heads)
    response = sum(ITEM_BYTES + 6 * len(text) + PIECE_BYTES * (s + w)
                   + nbest * (ITEM_BYTES + 3 * PIECE_BYTES * out + maps * out * (s + w) * FLOAT_BYTES)
                   for text, s, w, out in zip(texts, sources, words, outputs))
    total = sum(call.total() for call in split(work, steps, call_work, STEP_WORK))
    return Cost(work, steps, total, response)


def check_budget(cost: Cost, settings: ServeSettings) -> None:
    """Raise a 413 :class:`ApiError` naming the limit a request is over, its figure and by how much."""
    if cost.total_work > settings.max_work:
        raise ApiError(413, f"the request asks for {cost.total_work:,} subword steps of model work (over its "
                       f"texts: source subwords + beam × longest output, and {STEP_WORK} per decoding step); "
                       f"the limit (max_work) is "
                       f"{settings.max_work:,}, {cost.total_work / settings.max_work:.1f}× less: send fewer or "
                       "shorter texts, or a smaller beam")
    limit = settings.max_response_mb * MB
    if cost.response_bytes > limit:
        raise ApiError(413, f"the response could be {cost.response_bytes / MB:,.1f} MB (its attention matrices "
                       f"for every hypothesis); the limit (max_response_mb) is {settings.max_response_mb:g} MB, "
                       f"{cost.response_bytes / limit:.1f}× less: ask for fewer hypotheses (nbest), no heads, "
                       "or fewer or shorter texts")
