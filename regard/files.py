"""Writing files so that a failure never leaves a half-written one.

Every file Regard writes goes through :func:`atomic_file` (or its shorthands
:func:`write_text`, :func:`write_bytes` and :func:`write_json`): the data goes to a
temporary file in the same folder, is flushed to disk, and only then renamed over the
target, so the target is either the old file or the whole new one, and the temporary
file is removed on every way out (an exception, Ctrl-C, SIGTERM turned into an
exception by the command line). Folders (model checkpoints) go through
:func:`replace_folder` in the same way. A disk that is full or read-only is a
:class:`RegardError` naming the file, not a traceback.

:func:`check_file_target` and :func:`check_folder_target` say before any long work
whether an output can be written at all.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import stat
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any, Callable, Iterator

from regard.errors import RegardError

# Errors that say the disk refused the data (not that the program went wrong).
DISK_ERRORS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EIO, errno.EROFS})


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _cannot_write(shown: Path, err: OSError, existed: bool) -> RegardError:
    kept = f" ({shown} is unchanged)" if existed else ""
    return RegardError(f"cannot write {shown}: {err.strerror or err}{kept}")


@contextmanager
def _as_write_error(shown: Path, existed: bool) -> Iterator[None]:
    """Any OSError in the block becomes a one-line :class:`RegardError` naming ``shown``."""
    try:
        yield
    except OSError as err:
        raise _cannot_write(shown, err, existed) from None


def _remove(path: str | Path) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def _sync_folder(folder: Path) -> None:
    """Make the renames in ``folder`` durable (where the file system allows it)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _refuse(shown: Path, target: Path) -> None:
    """What no output may be: a folder, or an existing file that its permissions keep from writing."""
    if target.is_dir():
        raise RegardError(f"cannot write {shown}: it is a folder")
    if target.exists() and not os.access(target, os.W_OK):
        raise RegardError(f"cannot write {shown}: {os.strerror(errno.EACCES)} (the file is read-only)")


@contextmanager
def _device(shown: Path, target: Path, mode: str, encoding: str | None) -> Iterator[IO]:
    """Write straight into what is not a plain file (``/dev/null``, a pipe): there is nothing to replace."""
    with _as_write_error(shown, False):
        handle = open(target, mode, encoding=None if "b" in mode else encoding)
    with handle:
        try:
            yield handle
            handle.flush()
        except OSError as err:  # /dev/full
            if err.errno not in DISK_ERRORS:
                raise
            raise _cannot_write(shown, err, False) from None


@contextmanager
def atomic_file(path: str | Path, mode: str = "w", encoding: str | None = "utf-8") -> Iterator[IO]:
    """Open a temporary file beside ``path`` for writing; on success it replaces ``path``.

    On any exception (Ctrl-C included) the temporary file is removed and ``path`` is left as
    it was. A symlink is written through (its target is replaced, the link kept); an existing
    file keeps its permissions, a new one gets those of any new file (0666 less the umask); a
    device or a pipe (``/dev/null``) is written to directly. A full or read-only disk, a
    read-only file, or ``path`` being a folder, is a :class:`RegardError`.
    """
    shown, target = Path(path), Path(os.path.realpath(path))
    _refuse(shown, target)
    if target.exists() and not target.is_file():
        with _device(shown, target, mode, encoding) as handle:
            yield handle
        return
    existed = target.exists()
    with _as_write_error(shown, existed):
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, mode, encoding=None if "b" in mode else encoding) as handle:
            try:
                yield handle
            except OSError as err:  # a write in the caller's block: the disk's refusal is named
                if err.errno not in DISK_ERRORS:
                    raise
                raise _cannot_write(shown, err, existed) from None
            with _as_write_error(shown, existed):
                handle.flush()
                os.fsync(handle.fileno())
        with _as_write_error(shown, existed):
            try:
                os.chmod(tmp, stat.S_IMODE(target.stat().st_mode))
            except FileNotFoundError:
                os.chmod(tmp, 0o666 & ~_umask())
            os.replace(tmp, target)
    except BaseException:
        _remove(tmp)
        raise
    _sync_folder(target.parent)


def write_text(path: str | Path, text: str) -> Path:
    """Replace ``path`` with ``text`` atomically; returns the path."""
    with atomic_file(path) as handle:
        handle.write(text)
    return Path(path)


def write_bytes(path: str | Path, data: bytes) -> Path:
    """Replace ``path`` with ``data`` atomically; returns the path."""
    with atomic_file(path, "wb") as handle:
        handle.write(data)
    return Path(path)


def write_json(path: str | Path, data: Any) -> Path:
    """Replace ``path`` with ``data`` as indented UTF-8 JSON, atomically."""
    return write_text(path, json.dumps(data, indent=2, ensure_ascii=False) + "\n")


def _probe(folder: Path, what: str) -> None:
    """Write, sync and remove a one-byte file in ``folder``: a read-only or full disk says so here."""
    try:
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=".regard-probe.", suffix=".tmp")
    except OSError as err:
        raise RegardError(f"{what}: cannot write in {folder}: {err.strerror or err}") from None
    try:
        os.write(fd, b"\n")
        os.fsync(fd)
    except OSError as err:
        raise RegardError(f"{what}: cannot write in {folder}: {err.strerror or err}") from None
    finally:
        os.close(fd)
        _remove(tmp)


def check_file_target(path: str | Path, what: str) -> None:
    """Raise :class:`RegardError` unless a file can be written at ``path``: not a folder, in a
    folder that exists and takes new files. ``what`` names the output (``-o``, ``--json-out``)."""
    shown, target = Path(path), Path(os.path.realpath(path))
    if target.is_dir():
        raise RegardError(f"{what} {shown}: is a folder, not a file")
    if target.exists() and not os.access(target, os.W_OK):
        raise RegardError(f"{what} {shown}: {os.strerror(errno.EACCES)} (the file is read-only)")
    if target.exists() and not target.is_file():
        return  # a device or a pipe: written to as it is
    if not target.parent.is_dir():
        raise RegardError(f"{what} {shown}: folder {shown.parent} does not exist")
    _probe(target.parent, f"{what} {shown}")


def check_folder_target(path: str | Path, what: str, need_bytes: int = 0) -> None:
    """Raise :class:`RegardError` unless folder ``path`` exists or can be created, takes new files,
    and its disk has ``need_bytes`` free."""
    shown = Path(path)
    base = Path(os.path.realpath(path))
    while not base.exists() and base != base.parent:
        base = base.parent
    if not base.is_dir():
        raise RegardError(f"{what} {shown}: {base} is a file, not a folder")
    _probe(base, f"{what} {shown}")
    free = shutil.disk_usage(base).free
    if free < need_bytes:
        raise RegardError(f"{what} {shown}: {free / 2**20:.0f} MiB free on its disk, about "
                          f"{need_bytes / 2**20:.0f} MiB needed")


def _siblings(target: Path) -> tuple[Path, Path]:
    return target.with_name(f".{target.name}.tmp"), target.with_name(f".{target.name}.old")


def recover_folder(target: str | Path) -> None:
    """Undo a :func:`replace_folder` cut short between its two renames: if ``target`` is
    missing but its complete previous version ``.NAME.old`` is there, put that back."""
    target = Path(target)
    _, old = _siblings(target)
    if not target.exists() and old.is_dir():
        old.rename(target)


def _sync_files(folder: Path) -> None:
    for f in folder.iterdir():
        with f.open("rb") as handle:
            os.fsync(handle.fileno())
    _sync_folder(folder)


def replace_folder(target: str | Path, fill: Callable[[Path], None]) -> None:
    """Create folder ``target`` by letting ``fill`` write into a temporary one, then swap.

    At every moment either ``target`` or ``.NAME.old`` holds a complete version
    (:func:`recover_folder` puts the latter back); ``.NAME.tmp`` is never trusted and is
    removed when ``fill`` fails. A full or read-only disk is a :class:`RegardError`.
    """
    target = Path(target)
    tmp, old = _siblings(target)
    existed = target.exists() or old.exists()
    with _as_write_error(target, existed):
        recover_folder(target)
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
    try:
        try:
            fill(tmp)
            _sync_files(tmp)
        except OSError as err:
            if err.errno not in DISK_ERRORS:
                raise
            raise _cannot_write(target, err, existed) from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    try:
        with _as_write_error(target, existed):
            if target.exists():
                shutil.rmtree(old, ignore_errors=True)
                target.rename(old)
            tmp.rename(target)
    except BaseException:  # stopped between the renames: the previous version goes back
        recover_folder(target)
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    _sync_folder(target.parent)
    shutil.rmtree(old, ignore_errors=True)
