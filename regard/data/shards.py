"""Prepared training data on disk: token ids in shards of ``.npy`` arrays, read a pair at a time.

A prepared folder (written by :mod:`regard.data.binarise`) holds ``manifest.json``, the two
SentencePiece models (``src.spm``, ``tgt.spm``) and, for each shard ``shard-NNNNN``:

``.src.npy``, ``.tgt.npy``
    the token ids of every sentence, end to end (uint16 when the vocabulary fits, else uint32)
``.offsets.npy``
    (2, n) int64: where each pair's source and target ids start in those arrays
``.lengths.npy``
    (2, n): each pair's source and target lengths (the smallest unsigned type for ``max_len``)
``.links.npy``, ``.link_offsets.npy`` (only when prepared with ``data.train_links``)
    (K, 2): the (source word, target word) links of every pair, end to end (the lengths'
    dtype: a pair that fits has at most ``max_len`` words a side); (n + 1,) int64: pair j's
    links are rows ``link_offsets[j]`` to ``link_offsets[j + 1]``

:class:`ShardedPairs` reads the lengths of every shard into memory (1 to 4 bytes a pair and
side: all that batching needs) and reads each pair's offsets and ids with ``pread`` when a
batch asks for it. The files are not memory-mapped: a mapped page that a process touches
counts in its resident memory, and a kernel that caches files in large folios (Linux 6.x)
maps the whole folio, up to megabytes, at each fault, so one batch of pairs scattered over a
20M-pair corpus mapped 250 MiB (dropping the mappings after each batch did not help its
peak). ``pread`` copies the few bytes asked for and maps nothing; the file pages stay in the
page cache, shared and reclaimable.
"""

from __future__ import annotations

import hashlib
import os
import resource
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from regard.data.tokenizer import BOS, EOS, PAD
from regard.errors import RegardError
from regard.files import atomic_file, write_json

FORMAT = 1  # the version of this layout, recorded in every manifest
MANIFEST = "manifest.json"
ARRAYS = ("src", "tgt", "offsets", "lengths")
LINK_ARRAYS = ("links", "link_offsets")
_READ = 1 << 20


def shard_name(number: int) -> str:
    return f"shard-{number:05d}"


def ids_dtype(vocab_size: int) -> np.dtype:
    """uint16 when every id of a ``vocab_size`` vocabulary fits, else uint32."""
    return np.dtype(np.uint16 if vocab_size <= 1 << 16 else np.uint32)


def length_dtype(max_len: int) -> np.dtype:
    """The smallest unsigned type holding lengths up to ``max_len``."""
    return next(np.dtype(t) for t in (np.uint8, np.uint16, np.uint32) if max_len <= np.iinfo(t).max)


def file_digest(path: Path) -> str:
    """blake2b of a file's bytes, read a MiB at a time."""
    digest = hashlib.blake2b()
    with open(path, "rb") as handle:
        while block := handle.read(_READ):
            digest.update(block)
    return digest.hexdigest()


def starts_of(lengths: np.ndarray) -> np.ndarray:
    """(n,) int64 start of each sequence of ``lengths`` (n,) laid end to end."""
    starts = np.zeros(len(lengths), dtype=np.int64)
    np.cumsum(lengths[:-1], out=starts[1:])
    return starts


def write_shard(folder: Path, number: int, src: tuple[np.ndarray, np.ndarray], tgt: tuple[np.ndarray, np.ndarray],
                lines: tuple[int, int], dtypes: tuple[np.dtype, np.dtype],
                links: tuple[np.ndarray, np.ndarray] | None = None) -> dict[str, Any]:
    """Write one shard (each array atomically), then its record ``shard-NNNNN.json`` (sizes and
    digests of its files), and return the record.

    src, tgt: ``(ids, lengths)``, the (T,) ids end to end and the (n,) lengths of one side
    lines: the cleaned lines ``[first, end)`` the shard's pairs come from
    dtypes: the dtypes of ids and of lengths
    links: ``(links, counts)``, the (K, 2) word links end to end and the (n,) count of each pair's, or None
    """
    name = shard_name(number)
    (src_ids, src_len), (tgt_ids, tgt_len) = src, tgt
    arrays = {"src": src_ids.astype(dtypes[0], copy=False), "tgt": tgt_ids.astype(dtypes[0], copy=False),
              "offsets": np.stack([starts_of(src_len), starts_of(tgt_len)]),
              "lengths": np.stack([src_len, tgt_len]).astype(dtypes[1])}
    if links is not None:
        arrays["links"] = links[0].astype(dtypes[1])
        arrays["link_offsets"] = np.concatenate([[0], np.cumsum(links[1], dtype=np.int64)])
    files = {}
    for kind, array in arrays.items():
        path = folder / f"{name}.{kind}.npy"
        with atomic_file(path, "wb", encoding=None) as handle:
            np.save(handle, array, allow_pickle=False)
        files[path.name] = {"bytes": path.stat().st_size, "blake2b": file_digest(path)}
    record = {"name": name, "pairs": int(len(src_len)), "lines": list(lines),
              "tokens": [int(src_len.sum()), int(tgt_len.sum())], "files": files}
    write_json(folder / f"{name}.json", record)  # last: the shard is complete when its record is there
    return record


def shard_problem(folder: Path, record: dict[str, Any], check_digests: bool = False) -> str | None:
    """What is wrong with a shard's files against its record (None: nothing); digests optional."""
    for file, expected in record["files"].items():
        path = folder / file
        if not path.is_file():
            return f"{file} is missing"
        size = path.stat().st_size
        if size != expected["bytes"]:
            return f"{file} is {size} bytes where the manifest says {expected['bytes']} (truncated or rewritten)"
        if check_digests and file_digest(path) != expected["blake2b"]:
            return f"{file} does not match its recorded digest"
    return None


@dataclass
class _Stored:
    """A .npy file whose elements are read with ``pread``, as copies (nothing is mapped)."""

    fd: int
    offset: int  # of the first element, after the header
    dtype: np.dtype
    shape: tuple[int, ...]
    path: Path

    @classmethod
    def open(cls, path: Path) -> _Stored:
        try:
            with open(path, "rb") as handle:
                version = np.lib.format.read_magic(handle)
                read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                               else np.lib.format.read_array_header_2_0)
                shape, fortran, dtype = read_header(handle)
                offset = handle.tell()
            fd = os.open(path, os.O_RDONLY)
        except (OSError, ValueError) as err:
            raise RegardError(f"corrupt prepared data {path}: {err}") from None
        stored = cls(fd, offset, dtype, tuple(shape), path)
        if fortran or offset + stored.count * dtype.itemsize > os.fstat(fd).st_size:
            stored.close()
            raise RegardError(f"corrupt prepared data {path}: shorter than its header says")
        return stored

    @property
    def count(self) -> int:
        return int(np.prod(self.shape))

    def read(self, start: int, count: int) -> np.ndarray:
        """(count,) elements ``start`` … of the array, flattened in C order."""
        size = self.dtype.itemsize
        data = os.pread(self.fd, count * size, self.offset + start * size)
        if len(data) != count * size:
            raise RegardError(f"corrupt prepared data {self.path}: shorter than its header says")
        return np.frombuffer(data, self.dtype)

    def whole(self) -> np.ndarray:
        return self.read(0, self.count).reshape(self.shape)

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def __del__(self) -> None:  # a ShardedPairs dropped without close() leaks no descriptor
        self.close()


def allow_open_files(needed: int) -> None:
    """Raise the soft limit on open files toward the hard one when ``needed`` more may not fit
    (a corpus of hundreds of shards keeps four or six files open per shard)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and needed + 256 > soft:
        wanted = needed + 1024 if hard == resource.RLIM_INFINITY else min(hard, needed + 1024)
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))


class ShardedPairs:
    """The training pairs of a prepared folder, ``len()`` of them, indexed 0 … N-1 in corpus order.

    src_len, tgt_len: (N,) lengths in memory (what batching reads); ids stay on disk.
    """

    def __init__(self, folder: Path, shards: Iterable[dict[str, Any]]):
        self.folder, self.files, lengths, counts = folder, [], [], [0]
        records = list(shards)
        allow_open_files(len(records) * (len(ARRAYS) + len(LINK_ARRAYS)))
        linked = []
        for record in records:
            name = record["name"]
            linked.append(f"{name}.links.npy" in record["files"])
            kinds = ARRAYS + (LINK_ARRAYS if linked[-1] else ())
            files = {kind: _Stored.open(folder / f"{name}.{kind}.npy") for kind in kinds}
            stored = files.pop("lengths")
            lengths.append(stored.whole())  # in memory; its file is closed
            stored.close()
            self.files.append(files)
            counts.append(record["pairs"])
        self.starts = np.cumsum(counts)  # (shards + 1,) the first pair of each shard
        both = np.concatenate(lengths, axis=1) if lengths else np.zeros((2, 0), dtype=np.uint8)
        self.src_len, self.tgt_len = both[0], both[1]
        self.has_links = bool(linked) and all(linked)  # every pair has its word links (data.train_links)

    def __len__(self) -> int:
        return len(self.src_len)

    def _locate(self, i: int) -> tuple[int, dict[str, _Stored]]:
        """Pair ``i``'s place in its shard, and the shard's files."""
        shard = int(np.searchsorted(self.starts, i, side="right")) - 1
        return i - int(self.starts[shard]), self.files[shard]

    def pair(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        """The source and target ids of pair ``i`` (read from the shard's files)."""
        j, files = self._locate(i)
        offsets = files["offsets"]  # (2, n): row 0 the sources' starts, row 1 the targets'
        src_at, tgt_at = int(offsets.read(j, 1)[0]), int(offsets.read(offsets.shape[1] + j, 1)[0])
        return files["src"].read(src_at, int(self.src_len[i])), files["tgt"].read(tgt_at, int(self.tgt_len[i]))

    def padded(self, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Pairs ``idx`` (B,) as :class:`~regard.data.batching.Batch` holds them (int64 arrays:
        src (B, S), src_lengths (B,), tgt_in and tgt_out (B, T))."""
        src_len = self.src_len[idx].astype(np.int64)
        tgt_len = self.tgt_len[idx].astype(np.int64)
        width = int(tgt_len.max()) + 1
        src = np.full((len(idx), max(1, int(src_len.max()))), PAD, dtype=np.int64)
        tgt_in = np.full((len(idx), width), PAD, dtype=np.int64)
        tgt_out = np.full((len(idx), width), PAD, dtype=np.int64)
        tgt_in[:, 0] = BOS
        for row, i in enumerate(idx.tolist()):
            s, t = self.pair(i)
            src[row, :len(s)] = s
            tgt_in[row, 1:len(t) + 1] = t
            tgt_out[row, :len(t)] = t
            tgt_out[row, len(t)] = EOS
        return src, src_len, tgt_in, tgt_out

    def links(self, idx: np.ndarray) -> list[np.ndarray]:
        """The (k, 2) int64 (source word, target word) links of each of pairs ``idx`` (B,)."""
        found = []
        for i in idx.tolist():
            j, files = self._locate(i)
            start, end = (int(x) for x in files["link_offsets"].read(j, 2))
            found.append(files["links"].read(2 * start, 2 * (end - start)).reshape(-1, 2).astype(np.int64))
        return found

    def close(self) -> None:
        """Close the shards' files."""
        for files in self.files:
            for stored in files.values():
                stored.close()
        self.files = []

