"""`LocalStorage`: one file per key under a root directory.

A put writes to a hidden temporary file in the key's own directory and renames it into place,
so a reader sees either the old object or the whole new one, and a failed put leaves nothing.
By default a put is durable when it returns: the file is flushed to the device (``fsync``)
before its rename, and its directory (and any directory the put created) after it, so the
object survives a power cut, not only a crash of the process.
File I/O runs in worker threads in blocks of `block_size` bytes, off the event loop.

Unfinished objects (`AppendableStorage`) are hidden files beside their key's path, locked
(``flock``) while an append, cut or seal changes them, and sealed by a hard link, so no byte
is copied; a filesystem without hard links gets a copy instead.
"""

from __future__ import annotations

import errno
import fcntl
import os
import secrets
import time
from collections.abc import AsyncIterable, AsyncIterator, Callable, Sequence
from pathlib import Path
from typing import BinaryIO, TypeVar, TypeVarTuple

import anyio.to_thread

from ..errors import BackendUnavailable, BlobNotFound
from .base import BlobHasher, StoredBlob, UnfinishedRange, check_key, join_blocks

__all__ = ["LocalStorage"]

TEMP_SUFFIX = ".part"
FLUSH_STEP = 16 * 1024 * 1024
"""With ``fsync``, a put (or append) of a large file starts flushing its bytes to the device
every this many bytes while it is still receiving the rest."""
UNFINISHED_SUFFIX = ".growing" + TEMP_SUFFIX
"""Names an unfinished object's hidden file. It ends like a put's temporary file, so one
left by a dead upload is removed with them (`remove_partials`) once untouched that long."""
_LOCK_TRIES = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0)
"""Seconds between the tries of a seal or cut to lock an unfinished file held by an append."""
_T = TypeVar("_T")
_Ts = TypeVarTuple("_Ts")


class LocalStorage:
    """Objects as files under ``root``; keys are relative paths made by the service.

    ``block_size`` is how many bytes are gathered before one write or read in a worker thread.
    ``fsync`` (the default) makes every `put`, `append`, `seal` and `compose` durable before it
    returns: the file is flushed to the device before it is renamed into place, then its
    directory, and the parent of every directory it created, so that the object and its name
    survive a power cut. ``fsync=False`` trades that for speed: a crash of the process still
    loses nothing that was stored, but a power cut may lose the last objects (see
    docs/reliability.md for figures). A delete does not flush the directory: a file deleted
    just before a power cut may come back, and the orphan sweep removes it again.
    """

    def __init__(
        self, root: str | os.PathLike[str], *, block_size: int = 1024 * 1024, fsync: bool = True
    ) -> None:
        self.root = Path(root).resolve()
        self.block_size = block_size
        self.fsync = fsync
        created = [d for d in (self.root, *self.root.parents) if not d.exists()]
        self.root.mkdir(parents=True, exist_ok=True)
        self._directories = _DurableDirectories(self.root) if fsync else None
        for directory in created if fsync else ():
            _fsync_directory(directory.parent)

    def __repr__(self) -> str:
        return f"LocalStorage(root={str(self.root)!r}, fsync={self.fsync})"

    def path_for(self, key: str) -> Path:
        """The file that holds ``key``; `ValueError` for a key that is not a plain relative path."""
        return self.root / check_key(key)

    async def put(self, key: str, chunks: AsyncIterable[bytes]) -> StoredBlob:
        """Write to a hidden temporary file beside the target, then rename it into place
        (flushed before and after with ``fsync``): a reader sees the old object or the whole
        new one."""
        path = self.path_for(key)
        temp = path.with_name(f".{path.name}.{secrets.token_hex(4)}{TEMP_SUFFIX}")
        handle = await _io(_open_exclusive, temp)
        try:
            blob = await self._write_all(handle, chunks)
            await _io(_finish, handle, temp, path, self._directories)
        except BaseException:
            # Synchronous on purpose: it must run even when the task is being cancelled.
            handle.close()
            temp.unlink(missing_ok=True)
            raise
        return blob

    async def _write_all(
        self,
        handle: BinaryIO,
        chunks: AsyncIterable[bytes],
        write: Callable[[BinaryIO, BlobHasher, bytes], None] | None = None,
    ) -> StoredBlob:
        """Hash and write blocks in a worker thread while the next block is being received,
        so that receiving and storing overlap; at most three blocks are in memory."""
        hasher = BlobHasher()
        send, receive = anyio.create_memory_object_stream[bytes](max_buffer_size=1)
        flushing = False

        async def flush() -> None:
            nonlocal flushing
            try:
                await _io(os.fdatasync, handle.fileno())
            finally:
                flushing = False

        async def store_blocks() -> None:
            nonlocal flushing
            unflushed = 0
            async with receive:
                async for block in receive:
                    await _io(write or _write_block, handle, hasher, block)
                    unflushed += len(block)
                    # Durable writes flush as they go, in another thread, so that the flush
                    # at the end waits for the last blocks only, not the whole file.
                    if self.fsync and unflushed >= FLUSH_STEP and not flushing:
                        flushing, unflushed = True, 0
                        group.start_soon(flush)

        try:
            async with anyio.create_task_group() as group:
                group.start_soon(store_blocks)
                async with send:
                    async for block in join_blocks(chunks, self.block_size):
                        await send.send(block)
        except BaseExceptionGroup as errors:
            if len(errors.exceptions) == 1:  # the caller sees the error itself, not a group
                raise errors.exceptions[0] from None
            raise
        return hasher.result()

    async def compose(self, key: str, sources: Sequence[str | UnfinishedRange]) -> int:
        """Concatenate the source files (or ranges of unfinished files) into ``key`` in a
        worker thread, with the kernel copying the bytes (``copy_file_range``) where the
        filesystem allows; flushed as a put is with ``fsync``."""
        path = self.path_for(key)
        files = [
            self.path_for(source)
            if isinstance(source, str)
            else (self.unfinished_path(source.key), source.start, source.end)
            for source in sources
        ]
        temp = path.with_name(f".{path.name}.{secrets.token_hex(4)}{TEMP_SUFFIX}")
        try:
            return await _io(_concatenate, files, temp, path, self._directories, self.block_size)
        except FileNotFoundError as exc:
            missing = Path(str(exc.filename))
            key = (
                missing.relative_to(self.root).as_posix()
                if missing.is_relative_to(self.root)
                else "?"
            )
            raise BlobNotFound(key) from None

    def unfinished_path(self, key: str) -> Path:
        """The hidden file that holds the unfinished object ``key`` (`AppendableStorage`)."""
        path = self.path_for(key)
        return path.with_name(f".{path.name}{UNFINISHED_SUFFIX}")

    async def append(
        self, key: str, chunks: AsyncIterable[bytes], *, offset: int
    ) -> StoredBlob | None:
        """Write at the end of the unfinished file while holding its lock; a failed append is
        cut back before the lock is released. None when the file is locked, sealed, replaced,
        or not ``offset`` bytes long. With ``fsync`` the appended bytes (and the file's name,
        when this append created it) are on the device when it returns."""
        path = self.unfinished_path(key)
        handle = await _io(_open_unfinished, path, offset)
        if handle is None:
            return None
        try:
            blob = await self._write_all(handle, chunks, _write_fully)
            if self._directories is not None:
                await _io(_flush_append, handle, path, offset == 0, self._directories)
        except BaseException:
            # Synchronous on purpose: it must run even when the task is being cancelled.
            _cut_back(handle, path, offset)
            raise
        handle.close()
        return blob

    async def cut(self, key: str, *, start: int, end: int) -> None:
        """Truncate the unfinished file to ``start`` bytes (remove it at 0) if it ends at
        ``end``; a file an append keeps locked for seconds is left as it is."""
        await _io(_cut, self.unfinished_path(key), start, end)

    async def get_unfinished(
        self, key: str, *, start: int = 0, end: int | None = None
    ) -> AsyncIterator[bytes]:
        """Read the unfinished file as `get` reads an object."""
        path = self.unfinished_path(key)
        handle = await _io(_open_for_reading, path, key)
        return _read_range(handle, start, end, self.block_size)

    async def seal(self, key: str, target: str, *, size: int) -> None:
        """Hard-link the unfinished file (cut to ``size`` bytes, flushed to the device first
        with ``fsync``) to a temporary name beside ``target``, then rename that into place
        (and flush its directory with ``fsync``): no byte moves. Where the filesystem has no
        hard links, the bytes are copied."""
        source = self.unfinished_path(key)
        path = self.path_for(target)
        temp = path.with_name(f".{path.name}.{secrets.token_hex(4)}{TEMP_SUFFIX}")
        await _io(_seal, source, key, temp, path, size, self._directories)

    async def discard(self, key: str) -> None:
        """Unlink the unfinished file; a sealed object keeps its own name."""
        await _io(self.unfinished_path(key).unlink, True)

    async def get(
        self, key: str, *, start: int = 0, end: int | None = None
    ) -> AsyncIterator[bytes]:
        """Read ``block_size`` bytes at a time in a worker thread; the file is opened now, so a
        missing key is `BlobNotFound` here rather than while iterating."""
        path = self.path_for(key)
        handle = await _io(_open_for_reading, path, key)
        return _read_range(handle, start, end, self.block_size)

    async def head(self, key: str) -> int:
        """The file's size; `BlobNotFound` for a missing key."""
        path = self.path_for(key)
        try:
            return (await _io(path.stat)).st_size
        except FileNotFoundError:
            raise BlobNotFound(key) from None

    async def delete(self, key: str) -> None:
        """Unlink the file; a missing key is a no-op. Emptied directories stay."""
        await _io(self.path_for(key).unlink, True)

    async def aclose(self) -> None:
        """Nothing to release: files are opened per call."""
        return None

    async def keys(self) -> list[str]:
        """Every key stored, sorted; temporary files of puts in progress are not keys."""
        return [path.relative_to(self.root).as_posix() for path in await _io(self._scan, False)]

    async def iter_keys(self, *, modified_before: float) -> AsyncIterator[str]:
        """Files under ``root`` by modification time, in sorted order; temporary files of
        puts are not keys."""
        for path in await _io(self._scan, False, modified_before):
            yield path.relative_to(self.root).as_posix()

    async def remove_partials(self, *, modified_before: float) -> int:
        """Remove the temporary files of puts that died (their process was killed)."""
        partials = await _io(self._scan, True, modified_before)
        for path in partials:
            await _io(path.unlink, True)
        return len(partials)

    def _scan(self, partials: bool, modified_before: float | None = None) -> list[Path]:
        """Objects (or, with ``partials``, temporary files), sorted, optionally only those
        last modified before ``modified_before``."""
        found = []
        for directory, _, names in os.walk(self.root):
            for name in names:
                if name.startswith(".") != partials or (partials and TEMP_SUFFIX not in name):
                    continue
                path = Path(directory, name)
                if modified_before is None or _modified(path) < modified_before:
                    found.append(path)
        return sorted(found)


async def _io(function: Callable[[*_Ts], _T], *args: *_Ts) -> _T:
    """Run blocking file I/O in a worker thread; OS failures become `BackendUnavailable`."""
    try:
        return await anyio.to_thread.run_sync(function, *args)
    except (FileNotFoundError, BlobNotFound):
        raise
    except OSError as exc:
        reason = "the disk is full" if exc.errno == errno.ENOSPC else exc.strerror or str(exc)
        raise BackendUnavailable(f"Local storage failed: {reason}.") from exc


def _open_exclusive(path: Path) -> BinaryIO:
    path.parent.mkdir(parents=True, exist_ok=True)
    return open(path, "xb")


def _open_for_reading(path: Path, key: str) -> BinaryIO:
    try:
        return open(path, "rb")
    except FileNotFoundError:
        raise BlobNotFound(key) from None


def _write_block(handle: BinaryIO, hasher: BlobHasher, block: bytes) -> None:
    hasher.update(block)
    handle.write(block)


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


async def _read_range(
    handle: BinaryIO, start: int, end: int | None, block_size: int
) -> AsyncIterator[bytes]:
    try:
        await _io(handle.seek, start)
        remaining = None if end is None else max(0, end - start)
        while remaining is None or remaining > 0:
            size = block_size if remaining is None else min(block_size, remaining)
            block = await _io(handle.read, size)
            if not block:
                break
            if remaining is not None:
                remaining -= len(block)
            yield block
    finally:
        handle.close()


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


def _write_fully(handle: BinaryIO, hasher: BlobHasher, block: bytes) -> None:
    """Write all of ``block`` through an unbuffered handle (nothing is left in a buffer that
    closing it could write after a cut)."""
    hasher.update(block)
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
