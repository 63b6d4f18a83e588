"""Prepared training data on disk: token ids in shards of ``.npy`` arrays, read memory-mapped.

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
side: all that batching needs) and maps the ids and offsets. Pages of a mapped file that the
process has touched count in its resident memory, and Linux maps up to 16 neighbouring pages
at each fault, so a batch of pairs spread over a large file would leave tens of MiB of RSS
behind: after each batch the mappings are dropped (``MADV_DONTNEED``; the pages stay in the
page cache), and the RSS stays that of the process's own memory.
"""

from __future__ import annotations

import hashlib
import mmap
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
class _Mapped:
    """A .npy file mapped read-only."""

    array: np.ndarray
    map: mmap.mmap

    @classmethod
    def open(cls, path: Path) -> _Mapped:
        try:
            with open(path, "rb") as handle:
                version = np.lib.format.read_magic(handle)
                read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                               else np.lib.format.read_array_header_2_0)
                shape, fortran, dtype = read_header(handle)
                offset = handle.tell()
                mapped = mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ)
        except (OSError, ValueError) as err:
            raise RegardError(f"corrupt prepared data {path}: {err}") from None
        count = int(np.prod(shape))
        if fortran or offset + count * dtype.itemsize > len(mapped):
            raise RegardError(f"corrupt prepared data {path}: shorter than its header says")
        return cls(np.frombuffer(mapped, dtype, count, offset).reshape(shape), mapped)

    def release(self) -> None:
        """Drop the mapped pages from this process (they stay in the page cache)."""
        if hasattr(mmap, "MADV_DONTNEED"):
            self.map.madvise(mmap.MADV_DONTNEED)


class ShardedPairs:
    """The training pairs of a prepared folder, ``len()`` of them, indexed 0 … N-1 in corpus order.

    src_len, tgt_len: (N,) lengths in memory (what batching reads); ids stay on disk.
    """

    def __init__(self, folder: Path, shards: Iterable[dict[str, Any]]):
        self.folder, self.maps, lengths, counts = folder, [], [], [0]
        linked = []
        for record in shards:
            name = record["name"]
            linked.append(f"{name}.links.npy" in record["files"])
            kinds = ARRAYS + (LINK_ARRAYS if linked[-1] else ())
            maps = {kind: _Mapped.open(folder / f"{name}.{kind}.npy") for kind in kinds}
            lengths.append(np.array(maps.pop("lengths").array))  # a copy in memory; the map is closed
            self.maps.append(maps)
            counts.append(record["pairs"])
        self.starts = np.cumsum(counts)  # (shards + 1,) the first pair of each shard
        both = np.concatenate(lengths, axis=1) if lengths else np.zeros((2, 0), dtype=np.uint8)
        self.src_len, self.tgt_len = both[0], both[1]
        self.has_links = bool(linked) and all(linked)  # every pair has its word links (data.train_links)

    def __len__(self) -> int:
        return len(self.src_len)

    def _locate(self, i: int) -> tuple[int, dict[str, _Mapped]]:
        """Pair ``i``'s place in its shard, and the shard's mapped arrays."""
        shard = int(np.searchsorted(self.starts, i, side="right")) - 1
        return i - int(self.starts[shard]), self.maps[shard]

    def pair(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        """The source and target ids of pair ``i`` (views of the mapped files)."""
        j, maps = self._locate(i)
        (src_at, tgt_at), src_n, tgt_n = maps["offsets"].array[:, j], self.src_len[i], self.tgt_len[i]
        return maps["src"].array[src_at:src_at + src_n], maps["tgt"].array[tgt_at:tgt_at + tgt_n]

    def padded(self, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Pairs ``idx`` (B,) as :class:`~regard.data.batching.Batch` holds them (int64 arrays:
        src (B, S), src_lengths (B,), tgt_in and tgt_out (B, T)); then the pages read are released."""
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
        self.release()
        return src, src_len, tgt_in, tgt_out

    def links(self, idx: np.ndarray) -> list[np.ndarray]:
        """The (k, 2) int64 (source word, target word) links of each of pairs ``idx`` (B,)
        (copies; the pages read are then released)."""
        found = []
        for i in idx.tolist():
            j, maps = self._locate(i)
            start, end = maps["link_offsets"].array[j:j + 2]
            found.append(maps["links"].array[start:end].astype(np.int64))
        self.release()
        return found

    def release(self) -> None:
        for maps in self.maps:
            for mapped in maps.values():
                mapped.release()

