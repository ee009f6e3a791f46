"""The blocking file operations of `LocalStorage`, each run in a worker thread by `_io`:
opening, writing, flushing (``fsync``) and renaming a put's temporary file; reading ranges;
and the unfinished objects of `AppendableStorage`, locked with ``flock`` while an append, cut
or seal changes them and sealed by a hard link (a copy where links are not offered)."""

from __future__ import annotations

import ctypes
import errno
import fcntl
import functools
import os
import sys
import time
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path
from typing import BinaryIO, TypeVar, TypeVarTuple

import anyio.to_thread

from .._worker_threads import WorkerThreads
from ..errors import BackendUnavailable, BlobNotFound
from ._mapped_reads import Mapped, map_block
from .base import ByteCounter

_LOCK_TRIES = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0)
"""Seconds between the tries of a seal or cut to lock an unfinished file held by an append."""
_T = TypeVar("_T")
_Ts = TypeVarTuple("_Ts")


async def _io(function: Callable[[*_Ts], _T], *args: *_Ts) -> _T:
    """Run blocking file I/O in a worker thread; OS failures become `BackendUnavailable`."""
    try:
        return await anyio.to_thread.run_sync(function, *args)
    except (FileNotFoundError, BlobNotFound):
        raise
    except OSError as exc:
        raise _unavailable(exc) from exc


async def _io_on(
    threads: WorkerThreads[None],
    function: Callable[[*_Ts], _T],
    *args: *_Ts,
    undo: Callable[[_T], object] | None = None,
) -> _T:
    """`_io` on ``threads``, whose hand-off costs less than ``anyio.to_thread``'s; a cancelled
    caller still waits for the job to end, as with `_io`, and what it returned goes to
    ``undo`` (`WorkerThreads.run_to_end`)."""
    try:
        return await threads.run_to_end(lambda _: function(*args), undo=undo)
    except (FileNotFoundError, BlobNotFound):
        raise
    except OSError as exc:
        raise _unavailable(exc) from exc


def _unavailable(exc: OSError) -> BackendUnavailable:
    reason = "the disk is full" if exc.errno == errno.ENOSPC else exc.strerror or str(exc)
    return BackendUnavailable(f"Local storage failed: {reason}.")


def _open_exclusive(path: Path) -> BinaryIO:
    try:
        return open(path, "xb")
    except FileNotFoundError:  # the first object of its shard: make the directories
        path.parent.mkdir(parents=True, exist_ok=True)
        return open(path, "xb")


def _open_for_reading(path: Path, key: str) -> BinaryIO:
    try:
        return open(path, "rb")
    except FileNotFoundError:
        raise BlobNotFound(key) from None


def _write_block(handle: BinaryIO, counter: ByteCounter, block: bytes) -> None:
    counter.update(block)
    handle.write(block)


_SYNC_FILE_RANGE_WRITE = 2
"""``SYNC_FILE_RANGE_WRITE`` of Linux's ``sync_file_range``: start writing the dirty pages of
the range to the device, without waiting for them."""


def _load_sync_file_range() -> Callable[[int, int, int, int], int] | None:
    """libc's ``sync_file_range`` (Linux), called without the GIL; None where it is missing."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        function = ctypes.CDLL(None, use_errno=True).sync_file_range
    except (OSError, AttributeError):
        return None
    function.argtypes = (ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint)
    function.restype = ctypes.c_int
    return function


_sync_file_range = _load_sync_file_range()


def can_start_writeback() -> bool:
    """Whether `_start_writeback` does anything here (Linux with ``sync_file_range``)."""
    return _sync_file_range is not None


def _start_writeback(handle: BinaryIO, start: int) -> None:
    """Ask the kernel to start writing the bytes of ``handle`` from ``start`` to its end to
    the device now, without waiting for them, so that a flush (``fsync``) at the end of the
    write waits for the last blocks only. A hint: a failure is left to that flush to report."""
    if _sync_file_range is not None:
        _sync_file_range(handle.fileno(), start, 0, _SYNC_FILE_RANGE_WRITE)


def _write_and_start_writeback(
    write: Callable[[BinaryIO, ByteCounter, bytes], None],
    handle: BinaryIO,
    counter: ByteCounter,
    block: bytes,
) -> None:
    """``write`` the block, then start writing it to the device (`_start_writeback`)."""
    start = handle.tell()
    write(handle, counter, block)
    _start_writeback(handle, start)


def _finish(
    handle: BinaryIO, temp: Path, path: Path, directories: _DurableDirectories | None
) -> None:
    """Close ``temp`` and rename it to ``path``; with ``directories``, durably: the file is
    flushed to the device before the rename, and the directories that name it after."""
    handle.flush()
    if directories is not None:
        os.fsync(handle.fileno())
    handle.close()
    os.replace(temp, path)
    if directories is not None:
        directories.flush(path.parent)


def _put_whole(
    temp: Path,
    path: Path,
    data: bytes,
    counter: ByteCounter,
    directories: _DurableDirectories | None,
) -> None:
    """Count (hash, with a `BlobHasher`) ``data``, write it to ``temp`` and rename it to
    ``path`` as `_finish` does (flushed with ``directories``): a whole small object in one
    trip to a worker thread."""
    counter.update(data)
    handle = _open_exclusive(temp)
    try:
        handle.write(data)
        _finish(handle, temp, path, directories)
    except BaseException:
        handle.close()
        temp.unlink(missing_ok=True)
        raise


class _DurableDirectories:
    """Flushes directories after a file is renamed into them, and remembers which directories'
    own entries are known to be on the device, so that the parent of a directory is flushed
    once, by the first write that needs it, rather than on every write."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._known = {root}

    def flush(self, directory: Path) -> None:
        """Flush ``directory`` (a file was just renamed or created in it), then the parent of
        each of its ancestors up to the root whose entry is not known to be on the device."""
        _fsync_directory(directory)
        while directory not in self._known:
            _fsync_directory(directory.parent)
            # Known only once its parent is flushed: a write that finds it unknown meanwhile
            # flushes the parent itself rather than return before it is on the device.
            self._known.add(directory)
            directory = directory.parent


def _fsync_directory(directory: Path) -> None:
    descriptor = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def _flush_append(
    handle: BinaryIO, path: Path, created: bool, directories: _DurableDirectories
) -> None:
    """Flush an appended file to the device, and its directory if the append created it."""
    os.fsync(handle.fileno())
    if created:
        directories.flush(path.parent)


def _open_range(
    path: Path, key: str, start: int, end: int | None, block_size: int
) -> tuple[BinaryIO | None, bytes]:
    """Open ``path`` at ``start`` and read its first block of the range ``[start, end)``, in
    one call (one hand-off to a worker thread). The handle comes back only if the range may
    hold more bytes; a range that ends within the first block is read and closed at once."""
    handle = _open_for_reading(path, key)
    try:
        handle.seek(start)
        size = block_size if end is None else max(0, min(block_size, end - start))
        block = handle.read(size) if size else b""
        if len(block) < size or size < block_size:  # at the end of the file or of the range
            handle.close()
            return None, block
    except BaseException:
        handle.close()
        raise
    return handle, block


async def _read_range(
    handle: BinaryIO | None, first: bytes, start: int, end: int | None, block_size: int
) -> AsyncIterator[bytes]:
    """Yield ``first`` (the block `_open_range` read), then the rest of the range from
    ``handle`` (None: the range ended within ``first``), ``block_size`` bytes at a time."""
    try:
        if first:
            yield first
        if handle is None:
            return
        remaining = None if end is None else max(0, end - start - len(first))
        while remaining is None or remaining > 0:
            size = block_size if remaining is None else min(block_size, remaining)
            block = await _io(handle.read, size)
            if not block:
                break
            if remaining is not None:
                remaining -= len(block)
            yield block
    finally:
        if handle is not None:
            handle.close()


def _open_mapped(
    path: Path,
    key: str,
    start: int,
    end: int,
    block_size: int,
    function: Callable[[int, memoryview], _T],
) -> tuple[BinaryIO | None, Mapped[_T]]:
    """Open ``path`` (unbuffered: it is read with ``pread``) and read and map the first block
    of ``[start, end)`` (`map_block`), in one call (one hand-off to a worker thread). The
    handle comes back only if the range may hold more bytes: a range that ends within the
    first block is read and closed at once."""
    try:
        handle = open(path, "rb", buffering=0)  # noqa: SIM115  # the reader closes it
    except FileNotFoundError:
        raise BlobNotFound(key) from None
    try:
        size = min(block_size, end - start)
        first = map_block(functools.partial(_pread, handle.fileno()), function, start, size)
        if first[0] < size or start + size >= end:
            handle.close()
            return None, first
    except BaseException:
        handle.close()
        raise
    return handle, first


def _pread(descriptor: int, offset: int, size: int) -> bytes:
    """``size`` bytes of the file at ``offset``, fewer only at its end; `BackendUnavailable`
    for a failure (this runs in a worker thread, outside `_io`)."""
    try:
        data = os.pread(descriptor, size, offset)
        if 0 < len(data) < size:  # a short read before the end: rare, but allowed
            parts = [data]
            read = len(data)
            while read < size and (more := os.pread(descriptor, size - read, offset + read)):
                parts.append(more)
                read += len(more)
            data = b"".join(parts)
    except OSError as exc:
        raise _unavailable(exc) from exc
    return data


def _modified(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except FileNotFoundError:  # removed while scanning: it is not there to sweep
        return float("inf")


def _concatenate(
    sources: Sequence[Path | tuple[Path, int, int]],
    temp: Path,
    path: Path,
    directories: _DurableDirectories | None,
    block: int,
) -> int:
    """Write the sources (files, or ``(file, start, end)`` ranges) one after another into
    ``temp``, then rename it to ``path``."""
    size = 0
    output = _open_exclusive(temp)
    try:
        for source in sources:
            if isinstance(source, Path):
                with open(source, "rb") as part:
                    size += _copy(part, output, block)
            else:
                with open(source[0], "rb") as part:
                    size += _copy_range(part, output, source[1], source[2], block)
        _finish(output, temp, path, directories)
    except BaseException:
        output.close()
        temp.unlink(missing_ok=True)
        raise
    return size


def _copy(source: BinaryIO, target: BinaryIO, block: int) -> int:
    """Append all of ``source`` to ``target``; in the kernel where possible."""
    target.flush()
    copied = 0
    try:
        while count := os.copy_file_range(source.fileno(), target.fileno(), 1 << 30):
            copied += count
        return copied
    except OSError as exc:
        if exc.errno not in (errno.EXDEV, errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP):
            raise
    source.seek(copied)
    target.seek(0, os.SEEK_END)
    while data := source.read(block):
        target.write(data)
        copied += len(data)
    return copied


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


def _copy_range(source: BinaryIO, target: BinaryIO, start: int, end: int, block: int) -> int:
    """Append the bytes ``[start, end)`` of ``source`` to ``target``; in the kernel where
    possible. `OSError` if ``source`` ends before ``end``."""
    target.flush()
    position = start
    try:
        while position < end:
            count = os.copy_file_range(source.fileno(), target.fileno(), end - position, position)
            if not count:
                break
            position += count
    except OSError as exc:
        if exc.errno not in (errno.EXDEV, errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP):
            raise
        source.seek(position)
        target.seek(0, os.SEEK_END)
        while position < end and (data := source.read(min(block, end - position))):
            target.write(data)
            position += len(data)
    if position < end:
        raise OSError(errno.EIO, "an upload's file ends before the bytes of its parts")
    return end - start


def _close_opened(opened: tuple[BinaryIO | None, object]) -> None:
    """Close the file of what `_open_range` or `_open_mapped` returned to a caller cancelled
    meanwhile (the ``undo`` of `_io_on`)."""
    if opened[0] is not None:
        opened[0].close()
