"""``regard data prepare``: the training pairs streamed once into memory-mapped shards.

The prepared folder is ``data.prepared`` (default ``<train.out_dir>/data``); its files are
described in :mod:`regard.data.shards`. Preparing goes in stages whose files are each written
atomically, so that a prepare cut short (Ctrl-C, SIGKILL, a full disk) leaves no manifest,
and a rerun carries on from the last complete stage:

1. ``plan.json``: what is being prepared: the sources (sizes and blake2b digests), the
   cleaning, tokenizer and length settings, the format. A folder whose plan differs is
   emptied first (it must hold nothing but prepared data).
2. Cleaning: the training files are read a chunk at a time; worker processes decode and
   normalise the lines, apply the rules of :mod:`regard.data.cleaning` and digest the pairs
   that pass; this process spools those to ``cleaned.txt``, one ``source<TAB>target`` line
   each (``source<TAB>target<TAB>links`` with ``data.train_links``: a pair's word links,
   checked against its words, go where it goes), and their 8-byte digests to
   ``cleaned.hashes``. The digests then mark the duplicates (``cleaned.keep.npy``, a byte a
   line), and ``cleaned.json`` records the report: the stage is complete.
3. Tokenizers: trained on at most ``tokenizer.max_training_sentences`` kept pairs, evenly
   spaced through the spool (all of them when there are fewer), or given (a resumed run's).
4. Encoding: worker processes encode chunks of the spool; pairs with 0 or more than
   ``data.max_len`` subwords on a side are dropped; shards of about :data:`SHARD_TOKENS`
   token ids are written in order, each followed by its record. A rerun keeps the complete
   shards whose files still match their records' digests and encodes from where they end.
5. ``manifest.json``, written last; the spool and the other files of the work are removed.

Pairs given in memory (``train(data=...)``, the demo) go through the same stages, normalised
but not cleaned, as they always were. :func:`ensure_prepared` is what ``regard train`` calls:
it uses the folder when its manifest matches the config, the sources and the tokenizers, and
otherwise prepares it, saying in one line why.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import sys
import time
from contextlib import ExitStack
from dataclasses import dataclass
from itertools import count, zip_longest
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np

from regard.config import Config, differing_keys
from regard.data.cleaning import CHUNK, CheckedChunk, FirstOccurrences, Pair, add_counts, chunked, format_report, \
    new_report, repeated_values
from regard.data.encoding import CleanLines, EncodedChunk, EncodeLines, RawChunk, SpoolChunk
from regard.data.prepare import Pairs, build_tokenizers, data_files
from regard.data.shards import FORMAT, MANIFEST, ShardedPairs, file_digest, ids_dtype, length_dtype, \
    shard_name, shard_problem, write_shard
from regard.data.text import normalize, open_binary, raw_lines
from regard.data.tokenizer import Tokenizer
from regard.data.workers import default_processes, ordered_map
from regard.errors import RegardError
from regard.files import atomic_file, write_json

SHARD_TOKENS = 1 << 24  # source + target ids per shard (32 MiB of uint16)
PLAN, SPOOL, HASHES, KEEP, CLEANED = "plan.json", "cleaned.txt", "cleaned.hashes", "cleaned.keep.npy", "cleaned.json"
TOKENIZERS = ("src.spm", "tgt.spm")
MISSING = "no manifest"  # the reason :func:`stale_reason` gives for a folder never prepared
Tokenizers = tuple[Tokenizer, Tokenizer]
TrainTokenizers = Callable[[Config, Pairs], Tokenizers]
Log = Callable[[str], None]


def to_stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def prepared_dir(cfg: Config) -> Path:
    """Where the config's prepared training data lives: ``data.prepared``, or ``<train.out_dir>/data``."""
    return Path(cfg.data.prepared) if cfg.data.prepared else Path(cfg.train.out_dir) / "data"


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# ---------------------------------------------------------------- where pairs come from

class FileSource:
    """Training pairs from two line-aligned files (.gz accepted), cleaned as the config says, and
    optionally their word links (a Pharaoh file line-aligned with them, ``data.train_links``),
    which follow their pairs through cleaning into the shards."""

    cleaned = True

    def __init__(self, src: str | Path, tgt: str | Path, links: str | Path | None = None):
        self.paths = (Path(src), Path(tgt))
        self.links = Path(links) if links else None
        self.name = str(self.paths[0])

    @classmethod
    def from_config(cls, cfg: Config) -> FileSource:
        files = data_files(cfg.data)
        return cls(files.train_src, files.train_tgt, files.train_links or None)

    @staticmethod
    def _stat(path: Path) -> dict[str, Any]:
        if not path.is_file():
            raise RegardError(f"file not found: {path}")
        st = path.stat()
        return {"path": str(path.resolve()), "bytes": st.st_size, "mtime_ns": st.st_mtime_ns}

    def _identity(self, path: Path) -> dict[str, Any]:
        return {**self._stat(path), "blake2b": file_digest(path)}

    def identity(self) -> dict[str, Any]:
        """What the prepared data was made from: each file's path, size, time and digest (the
        links file's under ``links``, when there is one)."""
        found = {"files": [self._identity(p) for p in self.paths]}
        return {**found, "links": self._identity(self.links)} if self.links else found

    def changed(self, recorded: dict[str, Any]) -> str | None:
        """How the files differ from ``recorded`` (None: they do not)."""
        files = recorded.get("files")
        if not files or len(files) != 2:
            return "it was prepared from other training data"
        if bool(self.links) != ("links" in recorded):
            return f"it was prepared {'without' if self.links else 'with'} word links (data.train_links)"
        named = list(zip(self.paths, files)) + ([(self.links, recorded["links"])] if self.links else [])
        return next((reason for path, then in named if (reason := self._file_changed(path, then))), None)

    def _file_changed(self, path: Path, then: dict[str, Any]) -> str | None:
        """How ``path`` differs from its record ``then``. The digest is computed again only when
        the file's size is the same but its path or time is not."""
        now = self._stat(path)
        if now["bytes"] != then["bytes"]:
            return f"{path} has changed ({then['bytes']} bytes then, {now['bytes']} now)"
        if (now["path"], now["mtime_ns"]) != (then["path"], then["mtime_ns"]) and file_digest(path) != then["blake2b"]:
            return f"{path} has changed (same size, other content)"
        return None

    def refreshed(self, recorded: dict[str, Any]) -> dict[str, Any]:
        """``recorded`` (unchanged, see :meth:`changed`) with the files' present paths and times, so
        that a file merely touched or moved is digested once, not at every start."""
        found = {"files": [{**then, **self._stat(path)} for path, then in zip(self.paths, recorded["files"])]}
        return {**found, "links": {**recorded["links"], **self._stat(self.links)}} if self.links else found

    def _raw_chunks(self) -> Iterator[RawChunk]:
        src_path, tgt_path = self.paths
        for path in self.paths + ((self.links,) if self.links else ()):
            self._stat(path)
        with ExitStack() as files:
            src, tgt = (raw_lines(files.enter_context(open_binary(p)), str(p)) for p in self.paths)
            links = raw_lines(files.enter_context(open_binary(self.links)), str(self.links)) if self.links else None
            new_chunk = lambda first: RawChunk(first, [], [], [] if links else None)  # noqa: E731
            chunk, number = new_chunk(1), 0
            for number, (s, t) in enumerate(zip_longest(src, tgt), start=1):
                if s is None or t is None:
                    longer, shorter = (tgt_path, src_path) if s is None else (src_path, tgt_path)
                    raise RegardError(f"{longer}:{number}: no matching line in {shorter}, which has only "
                                      f"{number - 1} lines: source and target files must be line-aligned")
                chunk.src.append(s[1])
                chunk.tgt.append(t[1])
                if links is not None:
                    chunk.links.append(self._links_line(links, number))
                if len(chunk.src) == CHUNK:
                    yield chunk
                    chunk = new_chunk(number + 1)
            if links is not None and next(links, None) is not None:
                raise RegardError(f"{self.links}:{number + 1}: more lines than the {number} training pairs of "
                                  f"{src_path}: the links file must be line-aligned with the training files")
            if chunk.src:
                yield chunk

    def _links_line(self, links: Iterator[tuple[int, bytes]], number: int) -> bytes:
        """The links file's line ``number``; an error when the file ends before it."""
        line = next(links, None)
        if line is None:
            raise RegardError(f"{self.links}:{number}: no line for training pair {number}: the links file has only "
                              f"{number - 1} lines, and must be line-aligned with {self.paths[0]}")
        return line[1]

    def checked_chunks(self, cfg: Config, processes: int | None) -> Iterator[CheckedChunk]:
        """The pairs that pass the cleaning rules, a chunk at a time, checked on ``processes`` workers."""
        d = cfg.data
        clean = CleanLines(str(self.paths[0]), str(self.paths[1]), d.max_words, d.max_ratio, d.dedupe,
                           str(self.links or ""))
        return ordered_map(clean, self._raw_chunks(), processes)


class MemorySource:
    """Training pairs given in memory: normalised, not cleaned (as ``train(data=...)`` always was)."""

    cleaned = False
    name = "the training pairs given in memory"
    links = None  # pairs given in memory carry no word links

    def __init__(self, pairs: Pairs):
        self.pairs = pairs

    def _normalised(self) -> Iterator[list[Pair]]:
        for chunk in chunked(self.pairs):
            yield [(normalize(s), normalize(t)) for s, t in chunk]

    def identity(self) -> dict[str, Any]:
        digest = hashlib.blake2b()
        for chunk in self._normalised():
            digest.update("".join(f"{s}\t{t}\n" for s, t in chunk).encode())
        return {"memory": {"pairs": len(self.pairs), "blake2b": digest.hexdigest()}}

    def changed(self, recorded: dict[str, Any]) -> str | None:
        return None if recorded == self.identity() else "it was prepared from other training pairs"

    def refreshed(self, recorded: dict[str, Any]) -> dict[str, Any]:
        return recorded

    def checked_chunks(self, cfg: Config, processes: int | None) -> Iterator[CheckedChunk]:
        for pairs in self._normalised():
            yield CheckedChunk(pairs, np.empty(0, dtype=np.uint64), len(pairs))


Source = FileSource | MemorySource


def settings(cfg: Config, source: Source) -> dict[str, Any]:
    """The config values that the prepared data depends on, by section."""
    d = cfg.data
    data = {"max_len": d.max_len}
    if source.cleaned:
        data.update(max_words=d.max_words, max_ratio=d.max_ratio, dedupe=d.dedupe)
    return {"data": data, "tokenizer": dataclasses.asdict(cfg.tokenizer)}


# ---------------------------------------------------------------- the folder

def _ours(name: str) -> bool:
    """A file that preparing writes (the temporary files of :func:`regard.files.atomic_file` included)."""
    return name in (MANIFEST, PLAN, SPOOL, HASHES, KEEP, CLEANED, *TOKENIZERS) or name.startswith("shard-") \
        or (name.startswith(".") and name.endswith(".tmp"))


def start_folder(folder: Path, plan: dict[str, Any]) -> bool:
    """Make ``folder`` ready for ``plan``; True when it holds an interrupted prepare of the same plan."""
    folder.mkdir(parents=True, exist_ok=True)
    foreign = sorted(p.name for p in folder.iterdir() if not _ours(p.name) or p.is_dir())
    if foreign:
        raise RegardError(f"{folder} holds files that are not prepared training data ({', '.join(foreign[:3])}): "
                          "choose another data.prepared")
    if read_json(folder / PLAN) == plan:
        for path in folder.glob(".*.tmp"):  # what a killed attempt was writing
            path.unlink()
        return True
    for path in folder.iterdir():
        path.unlink()
    write_json(folder / PLAN, plan)
    return False


def read_json(path: Path) -> Any:
    """A JSON file's content, or None if it is missing or unreadable."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


# ---------------------------------------------------------------- stage 2: cleaning into the spool

def clean_to_spool(folder: Path, source: Source, cfg: Config, processes: int | None) -> dict[str, Any]:
    """Stream the source through cleaning into the spool; mark the duplicates; return the record."""
    report, lines = new_report(), 0
    with atomic_file(folder / SPOOL) as spool, atomic_file(folder / HASHES, "wb", encoding=None) as hashes:
        for chunk in source.checked_chunks(cfg, processes):
            add_counts(report, chunk)
            if chunk.links is None:
                spool.write("".join(f"{s}\t{t}\n" for s, t in chunk.pairs))
            else:  # a third field: the pair's links
                spool.write("".join(f"{s}\t{t}\t{links}\n" for (s, t), links in zip(chunk.pairs, chunk.links)))
            hashes.write(chunk.hashes.tobytes())
            lines += len(chunk.pairs)
    keep = duplicates_marked(folder / HASHES, lines) if source.cleaned and cfg.data.dedupe \
        else np.ones(lines, dtype=bool)
    (folder / HASHES).unlink()
    report["exact duplicate"] = lines - int(keep.sum())
    report["kept"] = int(keep.sum())
    if not report["kept"]:
        raise RegardError(f"{source.name}: no training pairs left after cleaning")
    with atomic_file(folder / KEEP, "wb", encoding=None) as handle:
        np.save(handle, keep, allow_pickle=False)
    cleaned = {"lines": lines, "kept": report["kept"], "report": report if source.cleaned else None}
    write_json(folder / CLEANED, cleaned)
    return cleaned


def duplicates_marked(path: Path, n: int) -> np.ndarray:
    """(n,) bool: False for the lines whose digest (in the raw uint64 file ``path``) came before."""
    first = FirstOccurrences(repeated_values(np.fromfile(path, dtype=np.uint64)))
    keep = np.empty(n, dtype=bool)
    with open(path, "rb") as handle:
        for at in range(0, n, 1 << 20):
            chunk = np.frombuffer(handle.read(8 << 20), dtype=np.uint64)
            keep[at:at + len(chunk)] = first.keep(chunk)
    return keep


def spool_lines(folder: Path, start: int = 0) -> Iterator[tuple[int, str]]:
    """``(index, line without its newline)`` of the spool's lines from ``start`` on."""
    with open(folder / SPOOL, encoding="utf-8", newline="\n") as spool:
        for index, line in enumerate(spool):
            if index >= start:
                yield index, line[:-1]


def spool_sample(folder: Path, keep: np.ndarray, n: int) -> Pairs:
    """At most ``n`` kept pairs of the spool, evenly spaced (every one when there are fewer)."""
    kept = int(keep.sum())
    taken = min(n, kept)
    wanted = (j * kept // taken for j in range(taken))  # ranks among the kept lines, as in spread()
    sample: Pairs = []
    target, rank = next(wanted, None), 0
    for index, line in spool_lines(folder):
        if target is None:
            break
        if keep[index]:
            if rank == target:
                src, tgt = line.split("\t")[:2]
                sample.append((src, tgt))
                target = next(wanted, None)
            rank += 1
    return sample


# ---------------------------------------------------------------- stage 4: encoding into shards

class ShardWriter:
    """Gathers encoded pairs into shards of about ``shard_tokens`` ids and writes them in order."""

    def __init__(self, folder: Path, number: int, first_line: int, shard_tokens: int,
                 dtypes: tuple[np.dtype, np.dtype]):
        self.folder, self.number, self.first_line = folder, number, first_line
        self.shard_tokens, self.dtypes = shard_tokens, dtypes
        self.parts: list[EncodedChunk] = []
        self.tokens = 0
        self.records: list[dict[str, Any]] = []

    def add(self, chunk: EncodedChunk) -> None:
        """Take a chunk's pairs; a shard closes with the pair that brings it to ``shard_tokens``."""
        while len(chunk.src_len):
            total = np.cumsum(chunk.src_len.astype(np.int64) + chunk.tgt_len)
            full = int(np.searchsorted(total, self.shard_tokens - self.tokens))
            if full >= len(total):
                self.parts.append(chunk)
                self.tokens += int(total[-1])
                return
            head, chunk = split(chunk, full + 1)
            self.parts.append(head)
            self.flush()

    def flush(self) -> None:
        """Write the gathered pairs as the next shard."""
        if not self.parts:
            return
        join = lambda name: np.concatenate([getattr(p, name) for p in self.parts])  # noqa: E731
        end = int(self.parts[-1].lines[-1]) + 1
        links = (join("links"), join("link_len")) if self.parts[0].links is not None else None
        record = write_shard(self.folder, self.number, (join("src_ids"), join("src_len")),
                             (join("tgt_ids"), join("tgt_len")), (self.first_line, end), self.dtypes, links)
        self.records.append(record)
        self.number, self.first_line, self.parts, self.tokens = self.number + 1, end, [], 0


def split(chunk: EncodedChunk, n: int) -> tuple[EncodedChunk, EncodedChunk]:
    """The first ``n`` pairs of ``chunk``, and the rest."""
    src_at, tgt_at = int(chunk.src_len[:n].sum()), int(chunk.tgt_len[:n].sum())
    head = EncodedChunk(chunk.src_ids[:src_at], chunk.src_len[:n], chunk.tgt_ids[:tgt_at], chunk.tgt_len[:n],
                        chunk.lines[:n])
    rest = EncodedChunk(chunk.src_ids[src_at:], chunk.src_len[n:], chunk.tgt_ids[tgt_at:], chunk.tgt_len[n:],
                        chunk.lines[n:])
    if chunk.links is not None:
        links_at = int(chunk.link_len[:n].sum())
        head.links, head.link_len = chunk.links[:links_at], chunk.link_len[:n]
        rest.links, rest.link_len = chunk.links[links_at:], chunk.link_len[n:]
    return head, rest


def spool_chunks(folder: Path, keep: np.ndarray, start: int) -> Iterator[SpoolChunk]:
    """The spool from line ``start``, :data:`CHUNK` lines at a time."""
    first, lines = start, []
    for index, line in spool_lines(folder, start):
        lines.append(line)
        if len(lines) == CHUNK:
            yield SpoolChunk(first, lines, keep[first:index + 1])
            first, lines = index + 1, []
    if lines:
        yield SpoolChunk(first, lines, keep[first:first + len(lines)])


def complete_shards(folder: Path) -> list[dict[str, Any]]:
    """The records of the shards 0, 1, … that an earlier attempt finished and that still match."""
    records = []
    for number in count():
        record = read_json(folder / f"{shard_name(number)}.json")
        if record is None or shard_problem(folder, record, check_digests=True):
            break
        records.append(record)
    for path in folder.glob("shard-*"):
        if int(path.name[6:11]) >= len(records):
            path.unlink()
    return records


def encode_to_shards(folder: Path, toks: Tokenizers, cfg: Config, processes: int | None,
                     shard_tokens: int, resume: bool, links: bool = False) -> list[dict[str, Any]]:
    """Stage 4: encode the kept spool lines into shards (after those already complete);
    ``links``: the spool lines carry the pairs' links, which the shards then hold too."""
    records = complete_shards(folder) if resume else []
    keep = np.load(folder / KEEP)
    start = records[-1]["lines"][1] if records else 0
    dtypes = (ids_dtype(max(len(t) for t in toks)), length_dtype(cfg.data.max_len))
    writer = ShardWriter(folder, len(records), start, shard_tokens, dtypes)
    many = processes is None or processes > 1
    encode = EncodeLines(toks[0].proto, toks[1].proto, cfg.data.max_len, dtypes[0].name, threads=1 if many else -1,
                         links=links)
    for chunk in ordered_map(encode, spool_chunks(folder, keep, start), processes):
        writer.add(chunk)
    writer.flush()
    return records + writer.records


# ---------------------------------------------------------------- the whole of it

def make_plan(cfg: Config, source: Source, tokenizers: Tokenizers | None, shard_tokens: int) -> dict[str, Any]:
    """What a prepare makes, as JSON: equal plans give equal folders."""
    given = {name: sha256(t.proto) for name, t in zip(TOKENIZERS, tokenizers)} if tokenizers else None
    plan = {"format": FORMAT, "source": source.identity(), "settings": settings(cfg, source),
            "tokenizers": given, "shard_tokens": shard_tokens}
    return json.loads(json.dumps(plan))


def stage_tokenizers(folder: Path, cfg: Config, given: Tokenizers | None, train_tokenizers: TrainTokenizers,
                     resume: bool, log: Log) -> Tokenizers:
    """Stage 3: the given tokenizers, those an interrupted attempt trained, or new ones."""
    paths = [folder / name for name in TOKENIZERS]
    if given is None and resume and all(p.is_file() for p in paths):
        return Tokenizer.load(paths[0]), Tokenizer.load(paths[1])
    if given is None:
        sample = spool_sample(folder, np.load(folder / KEEP), cfg.tokenizer.max_training_sentences)
        log(f"training the subword models on {len(sample)} pairs")
        given = train_tokenizers(cfg, sample)
    for path, tok in zip(paths, given):
        with atomic_file(path, "wb", encoding=None) as handle:
            handle.write(tok.proto)
    return given


def prepare(cfg: Config, source: Source, tokenizers: Tokenizers | None = None,
            train_tokenizers: TrainTokenizers = build_tokenizers, log: Log = to_stderr,
            processes: int | None = None, shard_tokens: int = SHARD_TOKENS) -> dict[str, Any]:
    """Prepare ``source`` into :func:`prepared_dir` (resuming an interrupted attempt); return the manifest.

    ``tokenizers``: encode with these (a resumed run's) instead of training new ones with
    ``train_tokenizers``. ``processes``: workers for cleaning and encoding (default: one per core).
    """
    folder, tic = prepared_dir(cfg), time.perf_counter()
    plan = make_plan(cfg, source, tokenizers, shard_tokens)
    resume = start_folder(folder, plan)
    cleaned = read_json(folder / CLEANED) if resume and (folder / SPOOL).is_file() else None
    if cleaned is None:
        cleaned = clean_to_spool(folder, source, cfg, processes)
    if cleaned["report"] is not None:
        log(format_report(cleaned["report"], source.name))
    toks = stage_tokenizers(folder, cfg, tokenizers, train_tokenizers, resume, log)
    records = encode_to_shards(folder, toks, cfg, processes, shard_tokens, resume, source.links is not None)
    pairs = sum(r["pairs"] for r in records)
    if not pairs:
        raise RegardError("no training pairs left after length filtering (data.max_len)")
    seconds = time.perf_counter() - tic
    read = cleaned["report"]["read"] if cleaned["report"] else cleaned["lines"]
    manifest = {
        "format": FORMAT, "plan": plan, "tokenizers": {name: sha256(t.proto) for name, t in zip(TOKENIZERS, toks)},
        "vocab": [len(t) for t in toks], "cleaning": cleaned["report"], "pairs": pairs,
        "dropped_by_max_len": cleaned["kept"] - pairs, "tokens": [sum(r["tokens"][i] for r in records) for i in (0, 1)],
        "bytes": sum(f["bytes"] for r in records for f in r["files"].values()), "shards": records,
        "prepared": {"seconds": round(seconds, 3), "pairs_per_s": round(read / seconds, 1),
                     "processes": processes if processes is not None else default_processes()},
    }
    write_json(folder / MANIFEST, manifest)
    for name in (PLAN, SPOOL, KEEP, CLEANED, *(f"{r['name']}.json" for r in records)):
        (folder / name).unlink(missing_ok=True)
    log(f"prepared {pairs} training pairs in {len(records)} shards ({manifest['bytes'] / 2**20:.1f} MiB) "
        f"in {folder}: {seconds:.1f} s, {read / seconds:.0f} pairs/s")
    return manifest


# ---------------------------------------------------------------- using a prepared folder

@dataclass
class Prepared:
    """An opened prepared folder: its manifest, pairs and tokenizers."""

    folder: Path
    manifest: dict[str, Any]
    pairs: ShardedPairs
    tokenizers: Tokenizers


def folder_problem(folder: Path, manifest: Any, expected: Tokenizers | None = None) -> str | None:
    """What makes a manifest's folder unusable as it is (None: nothing): its format, its
    tokenizers (against ``expected`` too), the sizes of its shards' files."""
    if not isinstance(manifest, dict):
        return "its manifest is unreadable"
    if manifest.get("format") != FORMAT:
        return f"it is in format {manifest.get('format')}, and this version of Regard reads format {FORMAT}"
    try:
        recorded = [manifest["tokenizers"][name] for name in TOKENIZERS]
        shards = list(manifest["shards"])
        manifest["plan"]["settings"], manifest["plan"]["source"]  # noqa: B018 - present
    except (KeyError, TypeError):
        return "its manifest is incomplete"
    for name, digest in zip(TOKENIZERS, recorded):
        path = folder / name
        if not path.is_file() or sha256(path.read_bytes()) != digest:
            return f"{name} is missing or is not the one the manifest records"
    if expected and [sha256(t.proto) for t in expected] != recorded:
        return "it was prepared with other subword models than the run being resumed"
    for record in shards:
        if problem := shard_problem(folder, record):
            return problem
    return None


def stale_reason(cfg: Config, source: Source, tokenizers: Tokenizers | None = None) -> str | None:
    """Why the config's prepared folder cannot be used for ``source`` (None: it can)."""
    folder = prepared_dir(cfg)
    if not (folder / MANIFEST).is_file():
        return MISSING
    manifest = read_json(folder / MANIFEST)
    if problem := folder_problem(folder, manifest, tokenizers):
        return problem
    changed = differing_keys(manifest["plan"]["settings"], settings(cfg, source))
    if changed:
        return f"it was prepared with other settings ({', '.join(changed)})"
    return source.changed(manifest["plan"]["source"])


def open_prepared(folder: Path, expected: Tokenizers | None = None) -> Prepared:
    """Open a prepared folder; a one-line error says what is wrong with one that cannot be used."""
    manifest = read_json(folder / MANIFEST)
    if not (folder / MANIFEST).is_file():
        raise RegardError(f"no prepared training data in {folder} (regard data prepare --config FILE)")
    if problem := folder_problem(folder, manifest, expected):
        raise RegardError(f"prepared training data in {folder} cannot be used: {problem}")
    toks = Tokenizer.load(folder / TOKENIZERS[0]), Tokenizer.load(folder / TOKENIZERS[1])
    return Prepared(folder, manifest, ShardedPairs(folder, manifest["shards"]), toks)


def ensure_prepared(cfg: Config, source: Source, tokenizers: Tokenizers | None = None,
                    train_tokenizers: TrainTokenizers = build_tokenizers, log: Log = to_stderr,
                    processes: int | None = None) -> Prepared:
    """The config's prepared data for ``source``, prepared first when missing or stale (saying why)."""
    folder = prepared_dir(cfg)
    reason = stale_reason(cfg, source, tokenizers)
    if reason is None:
        manifest = read_json(folder / MANIFEST)
        if manifest["cleaning"] is not None:
            log(format_report(manifest["cleaning"], source.name))
        recorded = manifest["plan"]["source"]
        if source.refreshed(recorded) != recorded:
            write_json(folder / MANIFEST, {**manifest, "plan": {**manifest["plan"], "source": source.refreshed(recorded)}})
    else:
        log(f"preparing the training data in {folder}" if reason == MISSING
            else f"preparing the training data in {folder} again: {reason}")
        prepare(cfg, source, tokenizers, train_tokenizers, log, processes)
    return open_prepared(folder, tokenizers)
