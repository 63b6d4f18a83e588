"""A small catalogue of public corpora, fetched into a local cache with checksums.

``regard data fetch multi30k`` downloads each file from its canonical public
address; ``--from DIR`` copies a local copy instead (DIR may be the corpus
folder itself or its parent, e.g. ``../shared/data``). Every file is checked
against the sha256 in the catalogue: a mismatch is an error naming the file
and both hashes, and the cache is left as it was. A corpus is written into a
temporary folder and renamed into place only when complete, so the cache
never holds half a corpus.

Cache: ``$REGARD_CACHE`` or ``~/.cache/regard``; corpus NAME lives in
``<cache>/NAME/`` with ``corpus.json`` (origin, checksums, licence, splits)
and ``{train,valid,test}`` source/target files named by :attr:`Corpus.splits`.

Tatoeba has no official split, so one is derived at fetch time by
:func:`grouped_split`: pairs are grouped by their English sentence
(case-folded, punctuation and spacing ignored), the groups shuffled with a
fixed seed, and whole groups dealt to test, then valid, then train, so no
English sentence is in two splits. The same input and seed always give the
same files.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import random
import re
import shutil
import tempfile
import urllib.error
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import IO, Callable, Iterable, Mapping

from regard.data.text import iter_parallel, read_tsv
from regard.errors import RegardError
from regard.files import write_json, write_text

Pair = tuple[str, str]
MANIFEST = "corpus.json"
_CHUNK = 1 << 20


@dataclass(frozen=True)
class Download:
    """Where a file comes from on the internet.

    ``sha256`` is of what the URL serves. A ``.gz`` URL is decompressed; with
    ``member`` set, that file is extracted from the zip. ``content_sha256`` is
    of the decompressed or extracted file when it differs from the catalogue
    copy's (Tatoeba, whose shared copy has a hidden test set removed).
    """

    url: str
    sha256: str
    member: str = ""
    content_sha256: str = ""


@dataclass(frozen=True)
class CorpusFile:
    """One file of a corpus: its name in the cache and the sha256 of its content there."""

    name: str
    sha256: str
    download: Download


@dataclass(frozen=True)
class TsvSplit:
    """How train/valid/test are derived from a ``source<TAB>target`` file."""

    tsv: str
    seed: int = 1
    valid: int = 2000  # pairs (at least; whole groups are kept together)
    test: int = 2000
    columns: int = 2


@dataclass(frozen=True)
class Corpus:
    """A named parallel corpus: its files, its splits, and how to credit it."""

    name: str
    description: str
    files: tuple[CorpusFile, ...]
    splits: Mapping[str, tuple[str, str]]  # split → (source file, target file) in the cache folder
    licence: str
    credit: str
    derived_split: TsvSplit | None = None
    note: str = ""  # said when the corpus is fetched by download


_M30K = ("https://raw.githubusercontent.com/multi30k/dataset/"
         "a3d2e0d26b56f3846f66a952536ffed4e401d05a/data/task1/raw/")


def _m30k(name: str, sha256: str, gz_sha256: str) -> CorpusFile:
    return CorpusFile(name, sha256, Download(f"{_M30K}{name}.gz", gz_sha256))


CORPORA: Mapping[str, Corpus] = MappingProxyType({
    "multi30k": Corpus(
        name="multi30k",
        description="Multi30k Task 1 en–fr: Flickr30k image captions, 29,000 / 1,014 / 1,000 pairs",
        files=(
            _m30k("train.en", "460a15fbd157e34a7a9957ee388c1ca247fe47af3ef25fb50442af6c274e0fc6",
                  "d79cfa999dd4c51d2cb42499b6796d5a882c3a8a961923c25a898c90f8bbd56f"),
            _m30k("train.fr", "5925a3c18f1587b6b54b87743106e6e8ab93618edb6f65d19eac0621f853a10d",
                  "622e75069e9f4c577425c4f277116ce66e63a2401c0a2312d90073cb12379a3c"),
            _m30k("val.en", "1f2a23d992769b5b3d209b0a10dd0b77c08cceb1f20dfb97ed0aafa49d107227",
                  "14f7d25ddd868909a9213e361768460edcacdd6ab9d1e77b92560dc10c10dc28"),
            _m30k("val.fr", "5304e444d842e962b2dda4d816b70b22a1765b15401642b7ca37a67477e708dc",
                  "ca3106f1a72390591d25f6c45cb4cd39dec4cd3f123e099748a3ce5256c160e9"),
            _m30k("test_2016_flickr.en", "399a4382932c1aadd3ceb9bef1008d388a64c76d4ae4e9d4728c6f4301cac182",
                  "611d361c6334bc7246101d48097c13cf5c4413c5befc793cc629934359d532d9"),
            _m30k("test_2016_flickr.fr", "cb3160d69b002bb638e66cc7612fcd56cb0af82eadc9c142dedc438afb885ef6",
                  "6d326e188d259fb1d04ac19eae3af956559b3a0b93d7635e56c90987c40c8b90"),
        ),
        splits=MappingProxyType({"train": ("train.en", "train.fr"), "valid": ("val.en", "val.fr"),
                                 "test": ("test_2016_flickr.en", "test_2016_flickr.fr")}),
        licence="no licence file; for non-commercial research and education (Flickr Terms of Use apply)",
        credit="Multi30k (github.com/multi30k/dataset): cite Elliott et al. 2016 (W16-3210) and, "
               "for French, Elliott et al. 2017 (W17-4718)",
    ),
    "tatoeba": Corpus(
        name="tatoeba",
        description="Tatoeba en–fr short everyday sentences (manythings.org release of 2019-04-07), "
                    "164,874 pairs in the project's copy",
        files=(CorpusFile(
            "eng-fra.tsv", "37d338e1defae99c27a4c1c597e11d3c32985c59df73ce0f6462d4c6c8c6097a",
            Download("https://raw.githubusercontent.com/modelexlab/data/"
                     "adddaf33ac35572bcfeb421efec29435e7ea9332/fra-eng.zip",
                     "161c93f18da3a7e6df611ed961426613260de8af06ccf8c79c977afe5135ac44",
                     member="fra-eng/fra.txt",
                     content_sha256="0bb85dbaa1c896844649094d7eaf2e34bee34e84fe362b26ce7e8f2e12aae104")),),
        splits=MappingProxyType({name: (f"{name}.en", f"{name}.fr") for name in ("train", "valid", "test")}),
        licence="CC-BY 2.0 FR (https://creativecommons.org/licenses/by/2.0/fr/)",
        credit="Tatoeba Project (tatoeba.org) and manythings.org/anki",
        derived_split=TsvSplit("eng-fra.tsv", seed=1, valid=2000, test=2000),
        note="the download is the full 2019 release (167,130 pairs), not the project's copy "
             "(164,874 pairs, a hidden test set removed): its splits differ, and a model trained on it "
             "has seen that hidden test set",
    ),
})


def default_cache() -> Path:
    """``$REGARD_CACHE`` or ``~/.cache/regard``."""
    return Path(os.environ.get("REGARD_CACHE") or "~/.cache/regard").expanduser()


def get_corpus(name: str) -> Corpus:
    if name not in CORPORA:
        raise RegardError(f"unknown corpus '{name}'; known: {', '.join(CORPORA)}")
    return CORPORA[name]


# ---------------------------------------------------------------- checksummed copies

def _copy_hashing(src: IO[bytes], dst: IO[bytes]) -> str:
    digest = hashlib.sha256()
    while chunk := src.read(_CHUNK):
        digest.update(chunk)
        dst.write(chunk)
    return digest.hexdigest()


def _check(what: str, expected: str, actual: str) -> None:
    if actual != expected:
        raise RegardError(f"checksum mismatch for {what}: expected sha256 {expected}, got {actual}")


def copy_verified(src: Path, dst: Path, expected: str) -> None:
    """Copy ``src`` (decompressing a ``.gz``) to ``dst``, checking the content's sha256."""
    try:
        with (gzip.open(src, "rb") if src.suffix == ".gz" else src.open("rb")) as fin, dst.open("wb") as fout:
            actual = _copy_hashing(fin, fout)
    except (OSError, EOFError) as err:
        raise RegardError(f"cannot read {src}: {err}") from None
    _check(str(src), expected, actual)


def download_verified(file: CorpusFile, dst: Path, workdir: Path, hint: str = "") -> None:
    """Download ``file`` into ``dst`` (via ``workdir``), checking both the download and its content.

    ``hint`` is appended to the message of a network error.
    """
    source = file.download
    raw = workdir / f"{file.name}.download"
    try:
        with urllib.request.urlopen(source.url, timeout=60) as response, raw.open("wb") as out:
            actual = _copy_hashing(response, out)
    except (urllib.error.URLError, OSError) as err:
        reason = getattr(err, "reason", err)
        raise RegardError(f"cannot download {source.url}: {reason}{hint}") from None
    _check(source.url, source.sha256, actual)
    expected = source.content_sha256 or file.sha256
    if source.member:
        try:
            with zipfile.ZipFile(raw) as archive, archive.open(source.member) as fin, dst.open("wb") as fout:
                actual = _copy_hashing(fin, fout)
        except (zipfile.BadZipFile, KeyError) as err:
            raise RegardError(f"{source.url}: cannot extract {source.member}: {err}") from None
        _check(f"{source.member} in {source.url}", expected, actual)
    elif source.url.endswith(".gz"):
        copy_verified(raw.rename(workdir / f"{file.name}.gz"), dst, expected)
    else:
        _check(source.url, expected, actual)
        raw.rename(dst)
    for leftover in (raw, workdir / f"{file.name}.gz"):
        leftover.unlink(missing_ok=True)


def locate(corpus: Corpus, file: CorpusFile, from_dir: Path) -> Path:
    """Find ``file`` in ``from_dir`` or ``from_dir/<corpus>``, plain or gzipped."""
    candidates = [folder / name for folder in (from_dir, from_dir / corpus.name)
                  for name in (file.name, f"{file.name}.gz")]
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    raise RegardError(f"{file.name} not found in {from_dir} (looked for "
                      f"{', '.join(str(c) for c in candidates)})")


# ---------------------------------------------------------------- splits

_PUNCT = re.compile(r"[^\w\s]")


def group_key(sentence: str) -> str:
    """What makes two English sentences "the same" for splitting: case, punctuation and spacing ignored."""
    return " ".join(_PUNCT.sub("", sentence.casefold()).split())


def grouped_split(pairs: Iterable[Pair], valid: int, test: int, seed: int,
                  key: Callable[[str], str] = group_key) -> dict[str, list[Pair]]:
    """Split pairs into train/valid/test so that no source sentence (by ``key``) is in two splits.

    Groups are shuffled with ``seed`` (in first-seen order before that, so the
    result depends only on the input and the seed) and dealt whole to test
    until it holds at least ``test`` pairs, then to valid, then the rest to
    train. Pairs keep their input order within a split.
    """
    pairs = list(pairs)
    groups: dict[str, list[int]] = {}
    for i, (src, _) in enumerate(pairs):
        groups.setdefault(key(src), []).append(i)
    order = list(groups)
    random.Random(seed).shuffle(order)
    split_of: dict[str, str] = {}
    counts = {"test": 0, "valid": 0, "train": 0}
    for k in order:
        name = "test" if counts["test"] < test else "valid" if counts["valid"] < valid else "train"
        split_of[k] = name
        counts[name] += len(groups[k])
    if not counts["train"]:
        raise RegardError(f"only {len(pairs)} pairs: nothing left for training after {test} test "
                          f"and {valid} validation pairs")
    out: dict[str, list[Pair]] = {"train": [], "valid": [], "test": []}
    for pair in pairs:
        out[split_of[key(pair[0])]].append(pair)
    return out


def write_split(split: dict[str, list[Pair]], out_dir: Path, suffixes: tuple[str, str] = ("en", "fr")) -> None:
    """Write ``out_dir/{train,valid,test}.{en,fr}``, one normalised sentence per line."""
    out_dir.mkdir(parents=True, exist_ok=True)
    for name, pairs in split.items():
        for side, suffix in enumerate(suffixes):
            lines = "".join(pair[side] + "\n" for pair in pairs)
            write_text(out_dir / f"{name}.{suffix}", lines)


# ---------------------------------------------------------------- the cache

def fetch(corpus: str | Corpus, cache_dir: str | Path | None = None, from_dir: str | Path | None = None,
          log: Callable[[str], None] = lambda message: None) -> Path:
    """Put a verified copy of ``corpus`` in ``<cache_dir>/<name>/`` and return that folder.

    With ``from_dir`` the files are copied from there, else downloaded. The
    folder is replaced only once every file has been verified (and, for
    Tatoeba, split); on any error the cache is left as it was.
    """
    corpus = get_corpus(corpus) if isinstance(corpus, str) else corpus
    cache = Path(cache_dir).expanduser() if cache_dir else default_cache()
    if from_dir is not None and not Path(from_dir).is_dir():
        raise RegardError(f"--from folder not found: {from_dir}")
    cache.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{corpus.name}.", dir=cache))
    work.chmod(0o755)
    try:
        for file in corpus.files:
            if from_dir is not None:
                src = locate(corpus, file, Path(from_dir))
                log(f"copying {src}")
                copy_verified(src, work / file.name, file.sha256)
            else:
                log(f"downloading {file.download.url}")
                download_verified(file, work / file.name, work, hint=(
                    f". Without internet access, take a local copy instead: "
                    f"regard data fetch {corpus.name} --from DIR"))
        manifest = _manifest(corpus, work, "download" if from_dir is None else str(Path(from_dir).resolve()))
        if from_dir is None and corpus.note:
            log(f"note: {corpus.note}")
        write_json(work / MANIFEST, manifest)
        target = cache / corpus.name
        old = cache / f".{corpus.name}.old"
        shutil.rmtree(old, ignore_errors=True)
        if target.exists():
            target.rename(old)
        work.rename(target)
        shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    return target


def _manifest(corpus: Corpus, folder: Path, origin: str) -> dict:
    """Derive the split (if any) inside ``folder`` and describe the result."""
    sizes: dict[str, int] = {}
    derived = None
    spec = corpus.derived_split
    if spec:
        split = grouped_split(read_tsv(folder / spec.tsv, spec.columns), spec.valid, spec.test, spec.seed)
        write_split(split, folder)
        sizes = {name: len(pairs) for name, pairs in split.items()}
        derived = {"from": spec.tsv, "seed": spec.seed, "valid": spec.valid, "test": spec.test,
                   "grouped_by": "English sentence, case-folded, punctuation and spacing ignored"}
    files = {file.name: _sha256(folder / file.name) for file in corpus.files}
    splits = {name: {"source": src, "target": tgt, **({"pairs": sizes[name]} if name in sizes else {})}
              for name, (src, tgt) in corpus.splits.items()}
    return {"corpus": corpus.name, "origin": origin, "description": corpus.description,
            "licence": corpus.licence, "credit": corpus.credit, "files": files, "splits": splits,
            "derived_split": derived}


def _sha256(path: Path) -> str:
    with path.open("rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def corpus_dir(name: str, cache_dir: str | Path | None = None) -> Path:
    """The cache folder of a fetched corpus; a clear error if it has not been fetched."""
    get_corpus(name)
    folder = (Path(cache_dir).expanduser() if cache_dir else default_cache()) / name
    if not (folder / MANIFEST).is_file():
        raise RegardError(f"corpus '{name}' is not in the cache ({folder}): run "
                          f"'regard data fetch {name}' (or with --from DIR for a local copy)")
    return folder


def split_files(name: str, split: str, cache_dir: str | Path | None = None) -> tuple[Path, Path]:
    """(source, target) files of ``split`` (train, valid or test) of a fetched corpus."""
    corpus, folder = get_corpus(name), corpus_dir(name, cache_dir)
    if split not in corpus.splits:
        raise RegardError(f"corpus '{name}' has no split '{split}'; it has: {', '.join(corpus.splits)}")
    src, tgt = corpus.splits[split]
    return folder / src, folder / tgt


def read_pairs(path: str | Path, tgt_path: str | Path | None = None, columns: int = 2,
               allow_empty: bool = False) -> Iterable[Pair]:
    """Stream pairs from a TSV file, or from two aligned files when ``tgt_path`` is given."""
    if tgt_path is None:
        return read_tsv(path, columns, allow_empty)
    return iter_parallel(path, tgt_path, allow_empty)


def describe(corpus: Corpus) -> str:
    """A few lines for ``regard data list``."""
    return (f"{corpus.name}: {corpus.description}\n  licence: {corpus.licence}\n  credit: {corpus.credit}\n"
            f"  files: {', '.join(f.name for f in corpus.files)}")



def fetched_summary(folder: Path) -> str:
    """What ``regard data fetch`` prints: where each split is, and how to credit the corpus."""
    manifest = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
    lines = [f"{manifest['corpus']} is in {folder}"]
    for name, split in manifest["splits"].items():
        size = f" ({split['pairs']} pairs)" if "pairs" in split else ""
        lines.append(f"  {name}: {split['source']} / {split['target']}{size}")
    if manifest.get("derived_split"):
        d = manifest["derived_split"]
        lines.append(f"  splits derived from {d['from']} with seed {d['seed']}, grouped by {d['grouped_by']}")
    lines += [f"  licence: {manifest['licence']}", f"  credit: {manifest['credit']}"]
    return "\n".join(lines)
