"""From a config's ``data`` section to training examples: files, cleaning, subwords.

:func:`data_files` says which files a config means (its own paths, or a fetched
corpus's), :func:`load_pairs` reads and cleans them into memory, :func:`build_tokenizers`
trains the SentencePiece models and :func:`encode_pairs` turns pairs into
:class:`~regard.data.batching.Example` s (validation data). Training data goes through
:mod:`regard.data.binarise`, which streams it with the same functions into shards on disk.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Sequence, TypeVar

from regard.config import Config, DataConfig
from regard.data.cleaning import clean_pairs, format_report
from regard.data.corpora import split_files
from regard.data.encoding import Example, fits
from regard.data.text import iter_parallel, read_parallel
from regard.data.tokenizer import Tokenizer
from regard.errors import RegardError

T = TypeVar("T")
Pairs = list[tuple[str, str]]


@dataclass(frozen=True)
class DataFiles:
    """The four files training reads, and the word links of the training pairs ("": none)."""

    train_src: str
    train_tgt: str
    valid_src: str
    valid_tgt: str
    train_links: str = ""


def data_files(d: DataConfig) -> DataFiles:
    """The config's paths; those left empty come from ``data.corpus``'s fetched files."""
    paths = {key: getattr(d, key) for key in ("train_src", "train_tgt", "valid_src", "valid_tgt")}
    if d.corpus and not all(paths.values()):
        for split in ("train", "valid"):
            try:
                src, tgt = split_files(d.corpus, split)
            except RegardError as err:
                raise RegardError(f"config: 'data.corpus': {err}") from None
            paths[f"{split}_src"] = paths[f"{split}_src"] or str(src)
            paths[f"{split}_tgt"] = paths[f"{split}_tgt"] or str(tgt)
    for key, value in paths.items():
        if not value:
            raise RegardError(f"config: 'data.{key}' is not set (nor 'data.corpus')")
    return DataFiles(**paths, train_links=d.train_links)


def load_pairs(cfg: Config, report: bool = True) -> tuple[Pairs, Pairs]:
    """Cleaned training pairs (the cleaning report goes to stderr) and the validation pairs."""
    d, files = cfg.data, data_files(cfg.data)
    train_pairs, cleaning = clean_pairs(iter_parallel(files.train_src, files.train_tgt, allow_empty=True),
                                      d.max_words, d.max_ratio, d.dedupe)
    if report:
        print(format_report(cleaning, files.train_src), file=sys.stderr)
    if not train_pairs:
        raise RegardError(f"{files.train_src}: no training pairs left after cleaning")
    return train_pairs, read_parallel(files.valid_src, files.valid_tgt)


def build_tokenizers(cfg: Config, pairs: Pairs) -> tuple[Tokenizer, Tokenizer]:
    """Train one SentencePiece model per language on the training pairs."""
    tc = cfg.tokenizer
    make = lambda texts, side: Tokenizer.train(  # noqa: E731
        texts, getattr(tc, f"{side}_vocab_size"), tc.type, tc.character_coverage, tc.max_training_sentences,
        what=f"tokenizer.{side}_vocab_size")
    return make((s for s, _ in pairs), "src"), make((t for _, t in pairs), "tgt")


def encode_pairs(pairs: Pairs, src_tok: Tokenizer, tgt_tok: Tokenizer, max_len: int) -> list[Example]:
    """Subword-encode pairs (in memory: validation data), dropping those longer than ``max_len``
    on either side; the prepared training data is encoded by the same calls
    (:mod:`regard.data.binarise`)."""
    src = src_tok.encode_batch([s for s, _ in pairs])
    tgt = tgt_tok.encode_batch([t for _, t in pairs])
    return [Example(s, t) for s, t in zip(src, tgt) if fits(s, t, max_len)]


def validation_pairs(cfg: Config) -> Pairs:
    """The validation pairs of the config's files, read strictly (no cleaning)."""
    files = data_files(cfg.data)
    return read_parallel(files.valid_src, files.valid_tgt)


def spread(items: Sequence[T], n: int) -> list[T]:
    """At most ``n`` items, evenly spaced through ``items``: a sample of a file sorted by length
    (Tatoeba's is) covers every length, where its first ``n`` lines would be the shortest."""
    if n >= len(items):
        return list(items)
    return [items[i * len(items) // n] for i in range(n)]
