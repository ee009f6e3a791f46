"""The blocking reads of `LocalStorage`, each run in a worker thread: a range opened and its
first block read in one call, then read block by block (`_open_range`, `_read_range`), or read
with ``pread`` and mapped by the caller's function (`_open_mapped`, for `MappedReads`)."""

from __future__ import annotations

import functools
import os
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import BinaryIO, TypeVar

from ..errors import BlobNotFound
from ._local_files import _io, _unavailable
from ._mapped_reads import Mapped, map_block

_T = TypeVar("_T")


def _open_for_reading(path: Path, key: str) -> BinaryIO:
    try:
        return open(path, "rb")
    except FileNotFoundError:
        raise BlobNotFound(key) from None


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


def _close_opened(opened: tuple[BinaryIO | None, object]) -> None:
    """Close the file of what `_open_range` or `_open_mapped` returned to a caller cancelled
    meanwhile (the ``undo`` of `_io_on`)."""
    if opened[0] is not None:
        opened[0].close()
