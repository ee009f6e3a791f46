"""The blocking file operations of `LocalStorage`'s unfinished objects (`AppendableStorage`),
each run in a worker thread: a hidden file locked with ``flock`` while an append, cut or seal
changes it, appended to unbuffered, cut back after a failed append, and sealed by a hard link
(a copy where links are not offered)."""

from __future__ import annotations

import errno
import fcntl
import os
import time
from pathlib import Path
from typing import BinaryIO

from ..errors import BlobNotFound
from ._local_files import _concatenate, _DurableDirectories
from .base import ByteCounter

_LOCK_TRIES = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0)
"""Seconds between the tries of a seal or cut to lock an unfinished file held by an append."""


def _flush_append(
    handle: BinaryIO, path: Path, created: bool, directories: _DurableDirectories
) -> None:
    """Flush an appended file to the device, and its directory if the append created it."""
    os.fsync(handle.fileno())
    if created:
        directories.flush(path.parent)


def _write_fully(handle: BinaryIO, counter: ByteCounter, block: bytes) -> None:
    """Write all of ``block`` through an unbuffered handle (nothing is left in a buffer that
    closing it could write after a cut)."""
    counter.update(block)
    view = memoryview(block)
    while view:
        view = view[handle.write(view) or 0 :]


def _open_unfinished(path: Path, offset: int) -> BinaryIO | None:
    """The unfinished file at ``path``, unbuffered, locked and positioned at its end, if it
    holds exactly ``offset`` bytes (created at 0); else None."""
    if offset == 0:
        path.parent.mkdir(parents=True, exist_ok=True)
    handle = _open_unbuffered(path, create=offset == 0)
    if handle is None:
        return None
    if not _try_lock(handle) or _unfinished_size(handle, path) != offset:
        handle.close()
        return None
    handle.seek(offset)
    return handle


def _open_unbuffered(path: Path, *, create: bool = False) -> BinaryIO | None:
    """``path`` open for reading and writing, without a buffer; None if it does not exist."""
    try:
        return open(os.open(path, os.O_RDWR | (os.O_CREAT if create else 0), 0o666), "r+b", 0)
    except FileNotFoundError:
        return None


def _try_lock(handle: BinaryIO) -> bool:
    try:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def _lock_within(handle: BinaryIO, pauses: tuple[float, ...]) -> bool:
    for pause in (*pauses, None):
        if _try_lock(handle):
            return True
        if pause is not None:
            time.sleep(pause)
    return False


def _unfinished_size(handle: BinaryIO, path: Path) -> int | None:
    """The size of the locked file ``handle``, or None when it is no longer the unfinished
    file at ``path`` (discarded, replaced) or has been sealed (it has a second name)."""
    status = os.fstat(handle.fileno())
    try:
        current = path.stat()
    except FileNotFoundError:
        return None
    if (current.st_dev, current.st_ino) != (status.st_dev, status.st_ino):
        return None
    return status.st_size if status.st_nlink == 1 else None


def _cut_back(handle: BinaryIO, path: Path, offset: int) -> None:
    """Undo a failed append that holds the lock: the file returns to ``offset`` bytes."""
    try:
        if offset == 0:
            path.unlink(missing_ok=True)
        else:
            os.ftruncate(handle.fileno(), offset)
    finally:
        handle.close()


def _cut(path: Path, start: int, end: int) -> None:
    handle = _open_unbuffered(path)
    if handle is None:
        return
    with handle:
        if _lock_within(handle, _LOCK_TRIES) and _unfinished_size(handle, path) == end:
            if start == 0:
                path.unlink()
            else:
                os.ftruncate(handle.fileno(), start)


def _seal(
    source: Path,
    key: str,
    temp: Path,
    path: Path,
    size: int,
    directories: _DurableDirectories | None,
) -> None:
    handle = _open_unbuffered(source)
    if handle is None:
        raise BlobNotFound(key)
    with handle:
        if not _lock_within(handle, _LOCK_TRIES):
            raise OSError(errno.EBUSY, "an append to the upload's file is still under way")
        stored = _unfinished_size(handle, source)
        if stored is None or stored < size:
            raise BlobNotFound(key)
        if stored > size:
            os.ftruncate(handle.fileno(), size)
        if directories is not None:
            os.fsync(handle.fileno())
        temp.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(source, temp)
        except OSError as exc:
            if exc.errno not in (errno.EPERM, errno.EXDEV, errno.EMLINK, errno.EOPNOTSUPP):
                raise
            _concatenate([source], temp, path, directories, 1024 * 1024)
            return
        try:
            os.replace(temp, path)
        except BaseException:
            temp.unlink(missing_ok=True)
            raise
        if directories is not None:
            directories.flush(path.parent)
