"""How `LocalStorage` runs blocking file I/O in worker threads (`_io`, `_io_on`), and the
blocking operations of its puts: opening, writing, flushing (``fsync``) and renaming a put's
temporary file, and concatenating files and ranges into one. Reads are in `._local_reads`, the
unfinished objects of `AppendableStorage` in `._local_unfinished`."""

from __future__ import annotations

import ctypes
import errno
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import BinaryIO, TypeVar, TypeVarTuple

import anyio.to_thread

from .._worker_threads import WorkerThreads
from ..errors import BackendUnavailable, BlobNotFound
from .base import ByteCounter

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
