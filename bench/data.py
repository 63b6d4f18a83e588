"""Multi30k en–fr prepared once, identically for all three systems.

Regard's own pipeline is replayed with the settings of ``recipes/multi30k-en-fr.yaml``:
cleaning (:func:`regard.data.cleaning.clean_pairs`), one SentencePiece model per
language trained by :class:`regard.data.tokenizer.Tokenizer` (unigram, 6,000 pieces,
character coverage 1.0) and the ``max_len`` subword filter. The result is written to
the cache:

* ``train.clean.{en,fr}``: the cleaned sentence pairs, Regard's training input. Regard
  trains its tokenizers from them itself; SentencePiece training is deterministic, so
  it gets the very same models (``regard_run`` checks the bytes and reports it);
* ``{train,val,test}.{en,fr}``: space-separated pieces for Joey NMT and OpenNMT-py
  (train after the ``max_len`` filter, exactly the pairs Regard keeps);
* ``vocab.{en,fr}``: every SentencePiece piece but Regard's 4 specials, one a line, so
  each peer (which adds its own 4 specials) has Regard's vocabulary size exactly;
* ``spm.{en,fr}.model`` and ``stats.json``.

The folder name is a hash of the inputs and settings, so a second run reuses it.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from regard.config import Config, load_config
from regard.data.cleaning import clean_pairs, format_report
from regard.data.text import iter_parallel, read_parallel
from regard.data.tokenizer import EOS, Tokenizer
from regard.data.prepare import build_tokenizers

REPO = Path(__file__).resolve().parent.parent
RECIPE = REPO / "recipes" / "multi30k-en-fr.yaml"
SPLITS = {"train": "train", "val": "val", "test": "test_2016_flickr"}
SRC, TGT = "en", "fr"


@dataclass
class Prepared:
    """Paths of the prepared data and a few statistics."""

    folder: Path
    corpus: Path  # the original Multi30k folder
    stats: dict

    @classmethod
    def load(cls, folder: Path) -> Prepared:
        """A folder written by :func:`prepare`."""
        stats = json.loads((folder / "stats.json").read_text())
        return cls(folder, Path(stats["corpus"]), stats)

    def pieces(self, split: str, lang: str) -> Path:
        return self.folder / f"{split}.{lang}"

    def clean(self, lang: str) -> Path:
        return self.folder / f"train.clean.{lang}"

    def vocab(self, lang: str) -> Path:
        return self.folder / f"vocab.{lang}"

    def spm(self, lang: str) -> Path:
        return self.folder / f"spm.{lang}.model"

    def original(self, split: str, lang: str) -> Path:
        return self.corpus / f"{SPLITS[split]}.{lang}"


def recipe_config() -> Config:
    """Regard's Multi30k recipe: its tokenizer and cleaning settings are the benchmark's."""
    return load_config(RECIPE)


def _key(corpus: Path, cfg: Config) -> str:
    files = [corpus / f"{name}.{lang}" for name in SPLITS.values() for lang in (SRC, TGT)]
    parts = [f"{p.name}:{p.stat().st_size}:{int(p.stat().st_mtime)}" for p in files]
    parts += [json.dumps(cfg.tokenizer.__dict__, sort_keys=True),
              json.dumps({k: getattr(cfg.data, k) for k in ("max_len", "max_words", "max_ratio", "dedupe")})]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:12]


def _write(path: Path, lines: list[str]) -> None:
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")


def _piece_lines(tok: Tokenizer, texts: list[str]) -> list[str]:
    return [" ".join(tok.pieces(ids)) for ids in tok.encode_batch(texts)]


def prepare(data_root: Path, cache: Path, log=print) -> Prepared:
    """Prepare ``data_root/multi30k`` into ``cache/data/<hash>`` (once) and describe it."""
    data_root = data_root.resolve()
    corpus = data_root / "multi30k" if (data_root / "multi30k").is_dir() else data_root
    missing = [f"{n}.{lang}" for n in SPLITS.values() for lang in (SRC, TGT) if not (corpus / f"{n}.{lang}").is_file()]
    if missing:
        raise SystemExit(f"bench: {corpus} lacks {', '.join(missing)} (give --data DIR or set REGARD_DATA)")
    cfg = recipe_config()
    folder = cache / "data" / _key(corpus, cfg)
    if (folder / "stats.json").is_file():
        return Prepared.load(folder)
    log(f"preparing Multi30k en-fr into {folder}")
    folder.mkdir(parents=True, exist_ok=True)
    d = cfg.data
    pairs, report = clean_pairs(iter_parallel(corpus / "train.en", corpus / "train.fr", allow_empty=True),
                                d.max_words, d.max_ratio, d.dedupe)
    log("  " + format_report(report, "train"))
    src_tok, tgt_tok = build_tokenizers(cfg, pairs)
    src_tok.save(folder / "spm.en.model")
    tgt_tok.save(folder / "spm.fr.model")
    _write(folder / "train.clean.en", [s for s, _ in pairs])
    _write(folder / "train.clean.fr", [t for _, t in pairs])
    src_ids, tgt_ids = src_tok.encode_batch([s for s, _ in pairs]), tgt_tok.encode_batch([t for _, t in pairs])
    kept = [i for i in range(len(pairs)) if 0 < len(src_ids[i]) <= d.max_len and 0 < len(tgt_ids[i]) <= d.max_len]
    _write(folder / "train.en", [" ".join(src_tok.pieces(src_ids[i])) for i in kept])
    _write(folder / "train.fr", [" ".join(tgt_tok.pieces(tgt_ids[i])) for i in kept])
    for split in ("val", "test"):
        split_pairs = read_parallel(corpus / f"{SPLITS[split]}.en", corpus / f"{SPLITS[split]}.fr")
        _write(folder / f"{split}.en", _piece_lines(src_tok, [s for s, _ in split_pairs]))
        _write(folder / f"{split}.fr", _piece_lines(tgt_tok, [t for _, t in split_pairs]))
    for lang, tok in ((SRC, src_tok), (TGT, tgt_tok)):
        _write(folder / f"vocab.{lang}", tok.pieces(list(range(EOS + 1, len(tok)))))
    src_len = sum(len(src_ids[i]) for i in kept)
    tgt_len = sum(len(tgt_ids[i]) + 1 for i in kept)  # + </s>
    stats = {
        "corpus": str(corpus), "recipe": str(RECIPE.relative_to(REPO)),
        "tokenizer": dict(cfg.tokenizer.__dict__), "max_len": d.max_len,
        "cleaning": {"max_words": d.max_words, "max_ratio": d.max_ratio, "dedupe": d.dedupe, **report},
        "train_pairs": len(kept), "src_vocab": len(src_tok), "tgt_vocab": len(tgt_tok),
        "train_src_tokens": src_len, "train_tgt_tokens_with_eos": tgt_len,
    }
    (folder / "stats.json").write_text(json.dumps(stats, indent=2))
    return Prepared(folder, corpus, stats)


def decode_pieces(tok: Tokenizer, line: str) -> str:
    """A peer's output line of pieces → detokenised text, specials dropped as Regard drops them."""
    pieces = [p for p in line.split() if p not in ("<unk>", "<s>", "</s>", "<pad>", "<blank>")]
    return tok.sp.decode_pieces(pieces)
