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
from pathlib import Path
from typing import Iterator

from regard.errors import RegardError

_SPACES = re.compile(r"[\s\u00a0\u2000-\u200a\u202f\u205f\u3000]+")
_CONTROL = re.compile(r"[\u0000-\u0008\u000b\u000c\u000e-\u001f\u007f\u200b\ufeff]")


def normalize(text: str) -> str:
    """NFC, no-break/narrow no-break spaces to spaces, collapsed whitespace."""
    text = unicodedata.normalize("NFC", text)
    text = _CONTROL.sub("", text)
    return _SPACES.sub(" ", text).strip()


def _open_text(path: Path):
    if path.suffix == ".gz":
        return gzip.open(path, "rb")
    return path.open("rb")


def read_lines(path: str | Path, allow_empty: bool = False) -> Iterator[str]:
    """Yield normalised lines of a UTF-8 (optionally gzipped) file.

    Raises RegardError naming the file and 1-based line number for invalid
    UTF-8, or for an empty line when ``allow_empty`` is false.
    """
    path = Path(path)
    if not path.is_file():
        raise RegardError(f"file not found: {path}")
    with _open_text(path) as handle:
        for number, raw in enumerate(handle, start=1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as err:
                raise RegardError(
                    f"{path}:{number}: invalid UTF-8 (byte {err.start + 1} of the line)") from None
            line = normalize(line)
            if not line and not allow_empty:
                raise RegardError(f"{path}:{number}: empty line")
            yield line


def read_parallel(src_path: str | Path, tgt_path: str | Path) -> list[tuple[str, str]]:
    """Read two line-aligned files into (source, target) pairs.

    Raises RegardError when the files differ in line count or contain an empty
    line or invalid UTF-8.
    """
    src = list(read_lines(src_path))
    tgt = list(read_lines(tgt_path))
    if len(src) != len(tgt):
        raise RegardError(
            f"{src_path} has {len(src)} lines but {tgt_path} has {len(tgt)}: "
            "source and target files must be line-aligned")
    if not src:
        raise RegardError(f"{src_path}: no sentences")
    return list(zip(src, tgt))
