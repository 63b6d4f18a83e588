"""The Python API: load a trained model and translate text.

>>> from regard import Translator
>>> t = Translator.load("runs/demo/model")
>>> out = t.translate(["the black cat ate the mouse"], beam=5)[0]
>>> out.text, out.score, out.target_words, out.word_attention  # doctest: +SKIP
>>> ensemble = Translator.load(["runs/rnn", "runs/transformer"])  # doctest: +SKIP
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import torch

from regard.config import Config
from regard.data.batching import pad
from regard.data.tokenizer import Tokenizer
from regard.ensembles import load_models
from regard.model.base import EncoderDecoder
from regard.precision import PRECISIONS, inference_device
from regard.runtime import reuse_freed_memory
from regard.search.beam import beam_search
from regard.search.common import Hypothesis, check_nbest
from regard.search.greedy import greedy_search


def word_attention(attention: list[list[float]], src_word_of_piece: list[int],
                   tgt_word_of_piece: list[int]) -> list[list[float]]:
    """Subword attention (T, S) → word attention (T_words, S_words).

    A source word receives the sum of its pieces' weights (so rows still sum
    to 1); a target word's row is the average of its pieces' rows.
    """
    n_src = max(src_word_of_piece, default=-1) + 1
    n_tgt = max(tgt_word_of_piece, default=-1) + 1
    summed = [[0.0] * n_src for _ in range(n_tgt)]
    counts = [0] * n_tgt
    for row, tw in zip(attention, tgt_word_of_piece):
        counts[tw] += 1
        for weight, sw in zip(row, src_word_of_piece):
            summed[tw][sw] += weight
    return [[w / counts[i] for w in summed[i]] for i in range(n_tgt)]


@dataclass
class Translation:
    """One translation of one source sentence, with its alignment.

    ``attention`` is (target pieces × source pieces); ``word_attention`` is
    (target words × source words), rows summing to 1. Both are None for a
    model without attention. For a Transformer they show one decoder layer's
    cross-attention averaged over its heads (``model.attention_layer``; the last by
    default); translated with ``heads``, ``head_attention`` and ``head_word_attention``
    hold every layer's heads, (layers × heads × target × source). ``attention_from``
    names the model whose attention an ensemble shows (its first).
    """

    source: str
    text: str
    score: float
    source_tokens: list[str]
    tokens: list[str]
    source_words: list[str]
    target_words: list[str]
    attention: list[list[float]] | None = None
    word_attention: list[list[float]] | None = None
    token_ids: list[int] = field(default_factory=list, repr=False)
    head_attention: list[list[list[list[float]]]] | None = field(default=None, repr=False)
    head_word_attention: list[list[list[list[float]]]] | None = field(default=None, repr=False)
    attention_from: str | None = None

    def to_dict(self) -> dict:
        """The fields as a dict, without the ids, and without the optional ones when unset."""
        data = dict(self.__dict__)
        data.pop("token_ids")
        for key in OPTIONAL:
            if data[key] is None:
                data.pop(key)
        return data


OPTIONAL = ("head_attention", "head_word_attention", "attention_from")  # in to_dict() only when set


class Translator:
    """A trained model with its tokenizers, ready to translate batches of text."""

    def __init__(self, model: EncoderDecoder, cfg: Config, src_tok: Tokenizer, tgt_tok: Tokenizer,
                 attention_from: str | None = None):
        self.model = model.eval()
        self.cfg = cfg
        self.src_tok = src_tok
        self.tgt_tok = tgt_tok
        self.attention_from = attention_from  # an ensemble's: the model whose attention it shows
        self.device = next(model.parameters()).device  # where the inputs go (the embeddings')

    @classmethod
    def load(cls, path: str | Path | Sequence[str | Path], precision: str = "fp32",
             device: str = "auto") -> Translator:
        """Load from a model folder (or a training run folder: its ``best/``) onto ``device``;
        from several, an ensemble (:mod:`regard.ensembles`) with the first one's settings.

        ``precision`` (see :data:`regard.precision.PRECISIONS`): ``bf16`` casts the weights to
        bfloat16, ``int8`` quantises the linear and recurrent layers' weights to 8-bit integers
        (PyTorch dynamic quantisation, CPU only); both are faster on CPU at a BLEU change of a few
        tenths (docs/PERFORMANCE.md). ``device``: ``auto`` (CUDA if available, else the CPU; the
        CPU for int8), ``cpu``, ``cuda``, ``cuda:N`` or ``mps``; one that is not available here is
        a :class:`RegardError`. The weights are read on the CPU, then moved. Loading also lets
        glibc reuse freed large blocks in this process (:func:`regard.runtime.reuse_freed_memory`),
        unless the environment says otherwise.
        """
        target = inference_device(precision, device)  # before reading anything: fails fast
        reuse_freed_memory()
        paths = [path] if isinstance(path, (str, Path)) else list(path)
        model, cfg, src_tok, tgt_tok = load_models(paths)
        attention_from = str(paths[0]) if len(paths) > 1 else None
        return cls(PRECISIONS[precision](model.to(target)), cfg, src_tok, tgt_tok, attention_from)

    @property
    def has_attention(self) -> bool:
        return self.model.has_attention

    def translate(self, texts: list[str], beam: int | None = None, **options) -> list[Translation]:
        """Best translation of each text (see :meth:`translate_nbest` for options)."""
        return [hyps[0] for hyps in self.translate_nbest(texts, beam=beam, nbest=1, **options)]

    def translate_nbest(self, texts: list[str], beam: int | None = None, nbest: int = 1,
                        length_penalty: float | None = None, max_ratio: float | None = None,
                        batch_size: int = 128, stopping: str | None = None,
                        heads: bool = False) -> list[list[Translation]]:
        """``nbest`` translations of each text, best first.

        beam: 1 is greedy search; None uses the model's configured beam.
        stopping: beam search's rule, "exact" or "first" (see :mod:`regard.search.beam`);
        None uses the model's.
        heads: also every decoder layer's and head's attention (``head_attention``).
        Empty texts give an empty translation.
        """
        beam = beam or self.cfg.search.beam
        alpha = self.cfg.search.length_penalty if length_penalty is None else length_penalty
        ratio = max_ratio or self.cfg.search.max_ratio
        stopping = stopping or self.cfg.search.stopping
        check_nbest(nbest, beam)
        attention = "heads" if heads and self.has_attention else "layer"
        ids = self.src_tok.encode_batch(texts)
        results: list[list[Translation]] = [[] for _ in texts]
        for chunk in self.batches(texts, batch_size, ids):
            src, lengths = (t.to(self.device) for t in pad([ids[i] for i in chunk]))  # no copy on the CPU
            with torch.inference_mode():
                if beam == 1:
                    found = [[h] for h in greedy_search(self.model, src, lengths, ratio, alpha, attention)]
                else:
                    found = beam_search(self.model, src, lengths, beam, nbest, alpha, ratio, stopping, attention)
            for i, hyps in zip(chunk, found):
                results[i] = [self._describe(texts[i], ids[i], h) for h in hyps]
        for i, text in enumerate(texts):
            if not ids[i]:
                empty = [] if self.has_attention else None
                results[i] = [Translation(text, "", 0.0, [], [], [], [], empty, empty, [],
                                          [] if attention == "heads" else None, [] if attention == "heads" else None,
                                          self.attention_from)]
        return results

    def align(self, sources: list[str], targets: list[str], rule: str = "argmax", threshold: float = 0.3,
              src_lang: str = "none", tgt_lang: str = "none", capitalize: bool = False) -> list:
        """Word links and attention of each given translation (teacher-forced): a list of
        :class:`regard.alignment.forced.Alignment`, on the texts' space-separated tokens.

        rule: ``argmax``, ``threshold`` or ``both`` (:data:`regard.alignment.links.RULES`).
        src_lang/tgt_lang: for tokenised input, the rules that rebuild ordinary text
        (:data:`regard.alignment.detok.LANGUAGES`); capitalize: upper-case the first letter.
        """
        from regard.alignment.forced import align_pairs
        if len(sources) != len(targets):
            raise ValueError(f"{len(sources)} sources but {len(targets)} targets")
        return align_pairs(self, [s.split() for s in sources], [t.split() for t in targets], rule, threshold,
                           src_lang, tgt_lang, capitalize)

    def batches(self, texts: list[str], batch_size: int, ids: list[list[int]] | None = None) -> list[list[int]]:
        """The indices of the non-empty ``texts`` sorted by subword length, in batches of
        ``batch_size`` sentences (a beam batch holds ``batch_size`` × beam hypotheses)."""
        ids = self.src_tok.encode_batch(texts) if ids is None else ids
        order = sorted((i for i in range(len(texts)) if ids[i]), key=lambda i: len(ids[i]))
        return [order[start:start + batch_size] for start in range(0, len(order), batch_size)]

    def _describe(self, source: str, src_ids: list[int], hyp: Hypothesis) -> Translation:
        src_words, src_map = self.src_tok.words(src_ids)
        tgt_words, tgt_map = self.tgt_tok.words(hyp.tokens)
        attention = words = heads = head_words = None
        if hyp.attention is not None:
            weights = hyp.attention[: len(hyp.tokens)]  # drop the </s> row: (T, S) or (T, L, H, S)
            if weights.dim() == 4:
                heads = weights.permute(1, 2, 0, 3).tolist()  # (L, H, T, S)
                head_words = [[word_attention(m, src_map, tgt_map) for m in layer] for layer in heads]
                weights = weights[:, self.model.attention_layer].mean(dim=1)
            attention = weights.tolist()
            words = word_attention(attention, src_map, tgt_map)
        return Translation(source, self.tgt_tok.decode(hyp.tokens), hyp.score,
                           self.src_tok.pieces(src_ids), self.tgt_tok.pieces(hyp.tokens),
                           src_words, tgt_words, attention, words, hyp.tokens, heads, head_words,
                           self.attention_from)
