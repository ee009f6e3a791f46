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

import functools
import os
from collections.abc import AsyncIterable, AsyncIterator, Callable, Sequence
from pathlib import Path
from typing import BinaryIO, TypeVar

import anyio.to_thread

from .._random import random_hex
from .._worker_threads import WorkerThreads
from ..errors import BlobNotFound
from ._local_files import (
    _concatenate,
    _DurableDirectories,
    _finish,
    _fsync_directory,
    _io,
    _io_on,
    _modified,
    _open_exclusive,
    _put_whole,
    _write_and_start_writeback,
    _write_block,
)
from ._local_reads import _close_opened, _open_mapped, _open_range, _pread, _read_range
from ._local_unfinished import _cut, _cut_back, _flush_append, _open_unfinished, _seal, _write_fully
from ._mapped_reads import mapped_blocks
from .base import (
    BlobHasher,
    ByteCounter,
    CountedPuts,
    ObjectRange,
    StoredBlob,
    UnfinishedRange,
    chained,
    check_key,
    join_blocks,
)

__all__ = ["LocalStorage"]

_T = TypeVar("_T")

TEMP_SUFFIX = ".part"
FLUSH_STEP = 16 * 1024 * 1024
"""With ``fsync``, a put (or append) of a large file starts flushing its bytes to the device
every this many bytes while it is still receiving the rest. On Linux an append (an Uploads
API part) also starts the writeback of each block as soon as the block is written
(``sync_file_range``, which does not wait), so the flush before the part's answer waits for
its last blocks only: a client sending parts one after another waits for that flush once a
part, where one large put's client waits once. A put does not, as that work in the writing
thread costs it more CPU than its one shorter flush saves."""
OPENER_THREADS = 8
"""Threads of one `LocalStorage` that open a file for a read and read its first block (the
whole of a small file): a cheaper hand-off than the worker threads of the other I/O."""
SMALL_PUT_THREADS = 8
"""Threads of one `LocalStorage` that write, flush and rename a whole small object (at most
one block) in one job: the same cheaper hand-off, for the puts of small uploads."""
READER_THREADS = 2
"""Threads of one `LocalStorage` that read and map the blocks of `get_mapped` after the first
(its read-ahead): few, since each keeps a malloc arena of its own, where the blocks it read
and mapped are freed back to (with 8, a 256 MiB download grew the server's memory by 18 MiB
instead of 3)."""
UNFINISHED_SUFFIX = ".growing" + TEMP_SUFFIX
"""Names an unfinished object's hidden file. It ends like a put's temporary file, so one
left by a dead upload is removed with them (`remove_partials`) once untouched that long."""


class LocalStorage(CountedPuts):
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
        self._openers = WorkerThreads[None](
            OPENER_THREADS, "openai-files-local-opener", make=_no_resource
        )
        self._small_puts = WorkerThreads[None](
            SMALL_PUT_THREADS, "openai-files-local-writer", make=_no_resource
        )
        self._readers = WorkerThreads[None](
            READER_THREADS, "openai-files-local-reader", make=_no_resource
        )
        for directory in created if fsync else ():
            _fsync_directory(directory.parent)

    def __repr__(self) -> str:
        return f"LocalStorage(root={str(self.root)!r}, fsync={self.fsync})"

    def path_for(self, key: str) -> Path:
        """The file that holds ``key``; `ValueError` for a key that is not a plain relative path."""
        return self.root / check_key(key)

    async def _put(self, key: str, chunks: AsyncIterable[bytes], counter: ByteCounter) -> None:
        """Write to a hidden temporary file beside the target, then rename it into place
        (flushed before and after with ``fsync``): a reader sees the old object or the whole
        new one. An object of at most one block is written, flushed and renamed in one trip
        to a thread kept for it (`SMALL_PUT_THREADS`) once all of it has arrived."""
        path = self.path_for(key)
        temp = path.with_name(f".{path.name}.{random_hex(4)}{TEMP_SUFFIX}")
        blocks = join_blocks(chunks, self.block_size)
        first = await anext(blocks, b"")
        second = await anext(blocks, None) if first else None
        if second is None:
            return await _io_on(
                self._small_puts, _put_whole, temp, path, first, counter, self._directories
            )
        handle = await _io(_open_exclusive, temp)
        try:
            await self._write_all(handle, chained((first, second), blocks), counter)
            await _io(_finish, handle, temp, path, self._directories)
        except BaseException:
            # Synchronous on purpose: it must run even when the task is being cancelled.
            handle.close()
            temp.unlink(missing_ok=True)
            raise

    async def _write_all(
        self,
        handle: BinaryIO,
        chunks: AsyncIterable[bytes],
        counter: ByteCounter,
        write: Callable[[BinaryIO, ByteCounter, bytes], None] = _write_block,
        *,
        start_writeback: bool = False,
    ) -> None:
        """Count (and hash, with a `BlobHasher`) and write blocks in a worker thread while the
        next block is being received, so that receiving and storing overlap; at most three
        blocks are in memory. With ``fsync`` and ``start_writeback`` each block's writeback
        to the device starts as soon as it is written (`FLUSH_STEP`)."""
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
                    if self.fsync and start_writeback:
                        await _io(_write_and_start_writeback, write, handle, counter, block)
                    else:
                        await _io(write, handle, counter, block)
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

    async def compose(
        self, key: str, sources: Sequence[str | ObjectRange | UnfinishedRange]
    ) -> int:
        """Concatenate the source files (or ranges of them or of unfinished files) into ``key`` in a
        worker thread, with the kernel copying the bytes (``copy_file_range``) where the
        filesystem allows; flushed as a put is with ``fsync``."""
        path = self.path_for(key)
        files = [
            self.path_for(source)
            if isinstance(source, str)
            else (self.path_for(source.key), source.start, source.end)
            if isinstance(source, ObjectRange)
            else (self.unfinished_path(source.key), source.start, source.end)
            for source in sources
        ]
        temp = path.with_name(f".{path.name}.{random_hex(4)}{TEMP_SUFFIX}")
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
        hasher = BlobHasher()
        try:
            await self._write_all(handle, chunks, hasher, _write_fully, start_writeback=True)
            if self._directories is not None:
                await _io(_flush_append, handle, path, offset == 0, self._directories)
        except BaseException:
            # Synchronous on purpose: it must run even when the task is being cancelled.
            _cut_back(handle, path, offset)
            raise
        handle.close()
        return hasher.result()

    async def cut(self, key: str, *, start: int, end: int) -> None:
        """Truncate the unfinished file to ``start`` bytes (remove it at 0) if it ends at
        ``end``; a file an append keeps locked for seconds is left as it is."""
        await _io(_cut, self.unfinished_path(key), start, end)

    async def get_unfinished(
        self, key: str, *, start: int = 0, end: int | None = None
    ) -> AsyncIterator[bytes]:
        """Read the unfinished file as `get` reads an object."""
        return await self._read(self.unfinished_path(key), key, start, end)

    async def seal(self, key: str, target: str, *, size: int) -> None:
        """Hard-link the unfinished file (cut to ``size`` bytes, flushed to the device first
        with ``fsync``) to a temporary name beside ``target``, then rename that into place
        (and flush its directory with ``fsync``): no byte moves. Where the filesystem has no
        hard links, the bytes are copied."""
        source = self.unfinished_path(key)
        path = self.path_for(target)
        temp = path.with_name(f".{path.name}.{random_hex(4)}{TEMP_SUFFIX}")
        await _io(_seal, source, key, temp, path, size, self._directories)

    async def discard(self, key: str) -> None:
        """Unlink the unfinished file; a sealed object keeps its own name."""
        await _io(self.unfinished_path(key).unlink, True)

    async def get(
        self, key: str, *, start: int = 0, end: int | None = None
    ) -> AsyncIterator[bytes]:
        """Read ``block_size`` bytes at a time in a worker thread; the file is opened and its
        first block read now, in one hand-off, so a missing key is `BlobNotFound` here rather
        than while iterating, and a range within one block needs no other hand-off."""
        return await self._read(self.path_for(key), key, start, end)

    async def get_mapped(
        self,
        key: str,
        function: Callable[[int, memoryview], _T],
        *,
        start: int,
        end: int,
        block_size: int,
    ) -> AsyncIterator[_T]:
        """`MappedReads`: the file is opened and its first block read and mapped now, in one
        hand-off, as `get` does; then each block is read (``pread``) and mapped in one job on
        a reader thread (`READER_THREADS`), a few jobs ahead of the consumer
        (``_mapped_reads.READ_AHEAD``)."""
        path = self.path_for(key)
        if start >= end:
            await self.head(key)  # `BlobNotFound` all the same
            start = end = 0
        handle, first = (
            await _io_on(
                self._openers,
                _open_mapped,
                path,
                key,
                start,
                end,
                block_size,
                function,
                undo=_close_opened,
            )
            if start < end
            else (None, None)
        )
        if handle is None:
            read: Callable[[int, int], bytes] = _no_read
            close: Callable[[], None] = _nothing_to_close
        else:
            read = functools.partial(_pread, handle.fileno())
            close = handle.close
        return mapped_blocks(
            lambda job: self._readers.submit(lambda _: job()),
            read,
            function,
            start=start,
            end=end,
            block_size=block_size,
            first=first,
            close=close,
        )

    async def _read(
        self, path: Path, key: str, start: int, end: int | None
    ) -> AsyncIterator[bytes]:
        handle, first = await _io_on(
            self._openers, _open_range, path, key, start, end, self.block_size, undo=_close_opened
        )
        return _read_range(handle, first, start, end, self.block_size)

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
        """End the threads that open and read files for reads (files are opened per call) and
        those that write small objects; a read or put after this starts them again."""
        await self._openers.aclose()
        await self._readers.aclose()
        await self._small_puts.aclose()

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


def _no_resource() -> None:
    """The opener threads keep nothing between jobs."""


def _no_read(offset: int, size: int) -> bytes:
    """Nothing: the range was read whole with the file's first block."""
    return b""


def _nothing_to_close() -> None:
    """The file was closed with its first block read."""
