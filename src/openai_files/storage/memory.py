"""`MemoryStorage`: bytes in a dict, for tests and notebooks."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterable, AsyncIterator, Callable
from typing import TypeVar

from ..errors import BlobNotFound
from ._mapped_reads import mapped_blocks
from .base import ByteCounter, CountedPuts

__all__ = ["MemoryStorage"]

_CHUNK = 1024 * 1024
_T = TypeVar("_T")


class MemoryStorage(CountedPuts):
    """Keeps every object in process memory. Not shared between processes."""

    def __init__(self, *, clock: Callable[[], float] = time.time) -> None:
        self._objects: dict[str, bytes] = {}
        self._written: dict[str, float] = {}
        self._clock = clock

    def __repr__(self) -> str:
        return f"MemoryStorage(objects={len(self._objects)})"

    async def get(
        self, key: str, *, start: int = 0, end: int | None = None
    ) -> AsyncIterator[bytes]:
        """Serve the bytes in slices of 1 MiB; `BlobNotFound` for a missing key."""
        data = self._lookup(key)
        stop = len(data) if end is None else min(end, len(data))
        return _slices(memoryview(data), start, stop)

    async def get_mapped(
        self,
        key: str,
        function: Callable[[int, memoryview], _T],
        *,
        start: int,
        end: int,
        block_size: int,
    ) -> AsyncIterator[_T]:
        """`MappedReads`: each block, a view of the object (no copy), mapped in a thread of the
        event loop's executor, a few ahead of the consumer; `BlobNotFound` for a missing key."""
        view = memoryview(self._lookup(key))
        loop = asyncio.get_running_loop()
        return mapped_blocks(
            lambda job: loop.run_in_executor(None, job),
            lambda offset, size: view[offset : offset + size],
            function,
            start=start,
            end=end,
            block_size=block_size,
        )

    async def head(self, key: str) -> int:
        """The object's length; `BlobNotFound` for a missing key."""
        return len(self._lookup(key))

    async def delete(self, key: str) -> None:
        """Forget the object; a missing key is a no-op."""
        self._objects.pop(key, None)
        self._written.pop(key, None)

    async def aclose(self) -> None:
        """Drop every object: what was stored is gone."""
        self._objects.clear()

    async def iter_keys(self, *, modified_before: float) -> AsyncIterator[str]:
        """Keys in sorted order, dated by the clock given to the constructor at their put."""
        for key, written in sorted(self._written.items()):
            if written < modified_before:
                yield key

    async def remove_partials(self, *, modified_before: float) -> int:
        """Always 0: a put stores nothing until it completes."""
        return 0  # a put stores nothing until it completes

    def keys(self) -> list[str]:
        """Every key stored, sorted (for tests and the sweeper)."""
        return sorted(self._objects)

    async def _put(self, key: str, chunks: AsyncIterable[bytes], counter: ByteCounter) -> None:
        """Gather the chunks and keep them under ``key``, replacing what was there; the
        object appears only once every chunk has arrived."""
        parts: list[bytes] = []
        async for chunk in chunks:
            counter.update(chunk)
            parts.append(chunk)
        self._objects[key] = b"".join(parts)
        self._written[key] = self._clock()

    def _lookup(self, key: str) -> bytes:
        try:
            return self._objects[key]
        except KeyError:
            raise BlobNotFound(key) from None


async def _slices(view: memoryview, start: int, stop: int) -> AsyncIterator[bytes]:
    for offset in range(start, stop, _CHUNK):
        yield bytes(view[offset : min(offset + _CHUNK, stop)])
