"""Reading and normalising text.

One normalisation is shared by training, translation and evaluation: Unicode
NFC, the no-break spaces of French typography (U+00A0, U+202F) and other
Unicode spaces mapped to a plain space, control characters dropped,
whitespace collapsed and stripped.
"""

from __future__ import annotations

import gzip
import re
import unicodedata
import zlib
from itertools import zip_longest
from pathlib import Path
from typing import IO, Iterator

from regard.errors import RegardError

_SPACES = re.compile(r"[\s\u00a0\u2000-\u200a\u202f\u205f\u3000]+")
_CONTROL = re.compile(r"[\u0000-\u0008\u000b\u000c\u000e-\u001f\u007f\u200b\ufeff]")


def normalize(text: str) -> str:
    """NFC, no-break/narrow no-break spaces to spaces, collapsed whitespace."""
    text = unicodedata.normalize("NFC", text)
    text = _CONTROL.sub("", text)
    return _SPACES.sub(" ", text).strip()


def open_binary(path: str | Path) -> IO[bytes]:
    """A file's bytes, decompressed when its name ends in ``.gz``."""
    path = Path(path)
    if path.suffix == ".gz":
        return gzip.open(path, "rb")
    return path.open("rb")


def read_lines(path: str | Path, allow_empty: bool = False) -> Iterator[str]:
    """Yield normalised lines of a UTF-8 (optionally gzipped) file.

    Raises RegardError naming the file and 1-based line number for invalid
    UTF-8, or for an empty line when ``allow_empty`` is false.
    """
    path = Path(path)
    for number, line in decoded_lines(path):
        line = normalize(line)
        if not line and not allow_empty:
            raise RegardError(f"{path}:{number}: empty line")
        yield line


def decoded_lines(path: str | Path) -> Iterator[tuple[int, str]]:
    """Yield ``(1-based line number, raw decoded line)`` of a UTF-8 (optionally gzipped) file.

    Nothing is normalised (tabs survive). Raises RegardError naming the file
    and line for invalid UTF-8 or corrupt gzip data.
    """
    path = Path(path)
    if not path.is_file():
        raise RegardError(f"file not found: {path}")
    with open_binary(path) as handle:
        yield from decode_stream(handle, str(path))


def decode_stream(handle: IO[bytes], name: str) -> Iterator[tuple[int, str]]:
    """Yield ``(line number, decoded line)`` from a binary stream; errors name ``name:line``."""
    for number, raw in raw_lines(handle, name):
        yield number, decode_line(raw, name, number)


def raw_lines(handle: IO[bytes], name: str) -> Iterator[tuple[int, bytes]]:
    """Yield ``(line number, undecoded line)`` from a binary stream; a read error names ``name:line``."""
    number = 0
    try:
        for number, raw in enumerate(handle, start=1):
            yield number, raw
    except (OSError, EOFError, zlib.error) as err:
        raise RegardError(f"{name}:{number + 1}: cannot read: {err}") from None


def decode_line(raw: bytes, name: str, number: int) -> str:
    """One line as text, its line break removed; invalid UTF-8 is an error naming ``name:number``."""
    try:
        return raw.decode("utf-8").rstrip("\r\n")
    except UnicodeDecodeError as err:
        raise RegardError(f"{name}:{number}: invalid UTF-8 (byte {err.start + 1} of the line)") from None


def read_parallel(src_path: str | Path, tgt_path: str | Path) -> list[tuple[str, str]]:
    """Read two line-aligned files into (source, target) pairs.

    Raises RegardError when the files differ in line count or contain an empty
    line or invalid UTF-8.
    """
    pairs = list(iter_parallel(src_path, tgt_path))
    if not pairs:
        raise RegardError(f"{src_path}: no sentences")
    return pairs


def iter_parallel(src_path: str | Path, tgt_path: str | Path,
                  allow_empty: bool = False) -> Iterator[tuple[str, str]]:
    """Stream normalised (source, target) pairs from two line-aligned files (.gz accepted).

    Raises RegardError naming file and line for invalid UTF-8, an empty line
    (unless ``allow_empty``), or the first line of the longer file that has
    no counterpart in the shorter one.
    """
    src = read_lines(src_path, allow_empty)
    tgt = read_lines(tgt_path, allow_empty)
    for number, (s, t) in enumerate(zip_longest(src, tgt), start=1):
        if s is None or t is None:
            longer, shorter = (tgt_path, src_path) if s is None else (src_path, tgt_path)
            raise RegardError(f"{longer}:{number}: no matching line in {shorter}, which has only "
                              f"{number - 1} lines: source and target files must be line-aligned")
        yield s, t


def read_tsv(path: str | Path, columns: int = 2, allow_empty: bool = False) -> Iterator[tuple[str, str]]:
    """Stream normalised pairs from a tab-separated file whose first two columns are a pair.

    Every line must have exactly ``columns`` tab-separated fields (Tatoeba's
    2019 release has 2; later manythings releases add a third, attribution,
    column: pass ``columns=3``). Extra columns are ignored. Raises RegardError
    naming file and line for a wrong field count, invalid UTF-8, or an empty
    field (unless ``allow_empty``).
    """
    path = Path(path)
    for number, line in decoded_lines(path):
        fields = line.split("\t")
        if len(fields) != columns:
            raise RegardError(f"{path}:{number}: expected {columns} tab-separated fields, found {len(fields)}")
        pair = normalize(fields[0]), normalize(fields[1])
        if not allow_empty and not all(pair):
            raise RegardError(f"{path}:{number}: empty {'source' if not pair[0] else 'target'} field")
        yield pair
