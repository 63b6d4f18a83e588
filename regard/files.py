"""Writing files so that a failure never leaves a half-written one.

Every file Regard writes goes through :func:`atomic_file` (or its shorthands
:func:`write_text` and :func:`write_json`): the data goes to a temporary file in
the same folder, is flushed to disk, and only then renamed over the target, so
the target is either the old file or the whole new one. Folders (model
checkpoints) go through :func:`replace_folder` in the same way.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any, Callable, Iterator


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextmanager
def atomic_file(path: str | Path, mode: str = "w", encoding: str | None = "utf-8") -> Iterator[IO]:
    """Open a temporary file beside ``path`` for writing; on success it replaces ``path``.

    On any exception (Ctrl-C included) the temporary file is removed and ``path`` is left as
    it was. A symlink is written through (its target is replaced, the link kept); an existing
    file keeps its permissions, a new one gets those of any new file (0666 less the umask).
    """
    target = Path(os.path.realpath(path))
    binary = "b" in mode
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, mode, encoding=None if binary else encoding) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        try:
            os.chmod(tmp, stat.S_IMODE(target.stat().st_mode))
        except FileNotFoundError:
            os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, target)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def write_text(path: str | Path, text: str) -> Path:
    """Replace ``path`` with ``text`` atomically; returns the path."""
    with atomic_file(path) as handle:
        handle.write(text)
    return Path(path)


def write_json(path: str | Path, data: Any) -> Path:
    """Replace ``path`` with ``data`` as indented UTF-8 JSON, atomically."""
    return write_text(path, json.dumps(data, indent=2, ensure_ascii=False) + "\n")


def _siblings(target: Path) -> tuple[Path, Path]:
    return target.with_name(f".{target.name}.tmp"), target.with_name(f".{target.name}.old")


def recover_folder(target: str | Path) -> None:
    """Undo a :func:`replace_folder` cut short between its two renames: if ``target`` is
    missing but its complete previous version ``.NAME.old`` is there, put that back."""
    target = Path(target)
    _, old = _siblings(target)
    if not target.exists() and old.is_dir():
        old.rename(target)


def replace_folder(target: str | Path, fill: Callable[[Path], None]) -> None:
    """Create folder ``target`` by letting ``fill`` write into a temporary one, then swap.

    At every moment either ``target`` or ``.NAME.old`` holds a complete version
    (:func:`recover_folder` puts the latter back); ``.NAME.tmp`` is never trusted.
    """
    target = Path(target)
    tmp, old = _siblings(target)
    recover_folder(target)
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        fill(tmp)
        for f in tmp.iterdir():
            with f.open("rb") as handle:
                os.fsync(handle.fileno())
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if target.exists():
        shutil.rmtree(old, ignore_errors=True)
        target.rename(old)
    tmp.rename(target)
    shutil.rmtree(old, ignore_errors=True)
