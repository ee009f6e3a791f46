"""`LocalStorage`: one file per key under a root directory.

A put writes to a hidden temporary file in the key's own directory and renames it into place,
so a reader sees either the old object or the whole new one, and a failed put leaves nothing.
By default a put is durable when it returns: the file is flushed to the device (``fsync``)
before its rename, and its directory (and any directory the put created) after it, so the
object survives a power cut, not only a crash of the process.
File I/O runs in worker threads in blocks of `block_size` bytes, off the event loop.
"""

from __future__ import annotations

import errno
import os
import secrets
from collections.abc import AsyncIterable, AsyncIterator, Callable
from pathlib import Path
from typing import BinaryIO, TypeVar, TypeVarTuple

import anyio.to_thread

from ..errors import BackendUnavailable, BlobNotFound
from .base import BlobHasher, StoredBlob, check_key, join_blocks

__all__ = ["LocalStorage"]

TEMP_SUFFIX = ".part"
FLUSH_STEP = 16 * 1024 * 1024
"""With ``fsync``, a put of a large file starts flushing its bytes to the device every this many
bytes while it is still receiving the rest."""
_T = TypeVar("_T")
_Ts = TypeVarTuple("_Ts")


class LocalStorage:
    """Objects as files under ``root``; keys are relative paths made by the service.

    ``block_size`` is how many bytes are gathered before one write or read in a worker thread.
    ``fsync`` (the default) makes every `put` and `compose` durable before it returns: the file
    is flushed to the device before it is renamed into place, then its directory, and the
    parent of every directory it created, so that the object and its name survive a power cut.
    ``fsync=False`` trades that for speed: a crash of the process still loses nothing that was
    stored, but a power cut may lose the last objects (see docs/reliability.md for figures).
    A delete does not flush the directory: a file deleted just before a power cut may come back,
    and the orphan sweep removes it again.
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

    async def _write_all(self, handle: BinaryIO, chunks: AsyncIterable[bytes]) -> StoredBlob:
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
                    await _io(_write_block, handle, hasher, block)
                    unflushed += len(block)
                    # Durable puts flush as they go, in another thread, so that the flush
                    # before the rename waits for the last blocks only, not the whole file.
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

    async def compose(self, key: str, sources: list[str]) -> int:
        """Concatenate the source files into ``key`` in a worker thread, with the kernel
        copying the bytes (``copy_file_range``) where the filesystem allows; flushed as a put
        is with ``fsync``."""
        path = self.path_for(key)
        files = [self.path_for(source) for source in sources]
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
    once, by the first put that needs it, rather than on every put."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._known = {root}

    def flush(self, directory: Path) -> None:
        """Flush ``directory`` (a rename into it just happened), then the parent of each of its
        ancestors up to the root whose entry is not known to be on the device yet."""
        _fsync_directory(directory)
        while directory not in self._known:
            _fsync_directory(directory.parent)
            # Known only once its parent is flushed: a put that finds it unknown meanwhile
            # flushes the parent itself rather than return before it is on the device.
            self._known.add(directory)
            directory = directory.parent


def _fsync_directory(directory: Path) -> None:
    descriptor = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


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
    sources: list[Path],
    temp: Path,
    path: Path,
    directories: _DurableDirectories | None,
    block: int,
) -> int:
    size = 0
    output = _open_exclusive(temp)
    try:
        for source in sources:
            with open(source, "rb") as part:
                size += _copy(part, output, block)
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
