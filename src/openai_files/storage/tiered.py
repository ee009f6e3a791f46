"""`TieredStorage`: a bounded hot tier (local disk, memory) in front of a durable cold one.

Writes go to the cold tier and succeed when it has them. A read of the whole object that the
hot tier lacks streams from the cold tier and fills the hot tier in the same pass (one read of
the cold tier; the bytes pass through, about a chunk at a time); readers of the same object
meanwhile wait for that fill and then read the hot tier. The hot tier holds at most
``max_bytes`` (fills in progress included), evicting the least recently used objects; an
object larger than that is served from the cold tier and not kept. A fill that does not
finish (the reader went away, the cold tier failed, the hot tier is full of larger fills)
is abandoned through the hot tier's own atomic put (which does not hash where the hot tier
offers `UnhashedPuts`), so no later read is served a partial object. A range read is served
by the hot tier when it holds the object, else by the cold tier alone (no fill); a miss that
names its end (as the service's downloads do) costs one ``head`` of the cold tier first, to
tell a whole read from a range.

Objects are immutable and keys never reused (the service makes a fresh key for every file),
so a copy in a hot tier is never stale: several replicas may each keep their own hot tier over
one cold tier. A `put` or `delete` through this storage drops the hot copy it replaces.

Fills run as tasks on the running asyncio loop (as `S3Storage` does, this wrapper needs
anyio's asyncio backend). The counts in `stats` are for metrics.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import weakref
from collections import OrderedDict
from collections.abc import AsyncIterable, AsyncIterator, Callable
from dataclasses import dataclass

import anyio
import anyio.abc
from anyio.streams.memory import MemoryObjectSendStream

from ..errors import BlobNotFound, OpenAIFilesError
from .base import ListableStorage, Storage, StoredBlob, encrypts, store_unhashed

__all__ = ["TierStats", "TieredStorage"]

log = logging.getLogger("openai_files")


@dataclass
class TierStats:
    """What the hot tier has done since it started: reads it served (``hits``), reads the
    cold tier served (``misses``), objects it took in (``fills``) or began to and dropped
    (``abandoned_fills``), objects it evicted to make room (``evictions``), and the bytes it
    holds now (``bytes``) in ``objects`` objects."""

    hits: int = 0
    misses: int = 0
    fills: int = 0
    abandoned_fills: int = 0
    evictions: int = 0
    bytes: int = 0
    objects: int = 0


class _FillAbandoned(Exception):
    """Raised into the hot tier's put to abandon a fill."""


class _Fill:
    """One object on its way into the hot tier, which readers of the same key wait for."""

    def __init__(self) -> None:
        self.done = anyio.Event()
        self.reserved = 0
        self.started = False
        self.dropped = False  # too large for the hot tier, or its put failed
        self.complete = False  # every chunk reached the hot tier's put


class TieredStorage:
    """``hot`` (bounded to ``max_bytes``, least recently used evicted) in front of ``cold``;
    see the module for what goes where."""

    def __init__(self, hot: Storage, cold: Storage, *, max_bytes: int) -> None:
        if max_bytes < 1:
            raise ValueError(f"max_bytes must be positive, not {max_bytes}")
        self.hot = hot
        self.cold = cold
        self.max_bytes = max_bytes
        self.stats = TierStats()
        self._observers: list[Callable[[str, TierStats], None]] = []
        self._held: OrderedDict[str, int] = OrderedDict()  # key -> size, least recent first
        self._fills: dict[str, _Fill] = {}
        self._reserved = 0
        self._loaded = False
        self._loading = anyio.Lock()

    @property
    def encrypts_at_rest(self) -> bool:
        """Whether either tier encrypts (`encrypts`)."""
        return encrypts(self.hot) or encrypts(self.cold)

    def observe(self, observer: Callable[[str, TierStats], None]) -> None:
        """Call ``observer(event, stats)`` after each ``hit``, ``miss``, ``fill``,
        ``abandoned_fill`` and ``eviction``, and after each ``removal`` of an object from the
        hot tier (evicted, deleted, or dropped by a put): metrics keep up with `stats` this
        way. It must not block."""
        self._observers.append(observer)

    def _count(self, event: str) -> None:
        for observer in self._observers:
            observer(event, self.stats)

    def __repr__(self) -> str:
        return f"TieredStorage(hot={self.hot!r}, cold={self.cold!r}, max_bytes={self.max_bytes})"

    async def put(self, key: str, chunks: AsyncIterable[bytes]) -> StoredBlob:
        """Store in the cold tier; a copy the hot tier held under ``key`` is dropped."""
        blob = await self.cold.put(key, chunks)
        await self.evict(key)
        return blob

    async def put_unhashed(self, key: str, chunks: AsyncIterable[bytes]) -> int:
        """As `put`, without a hash (`UnhashedPuts`; the cold tier's `Storage.put` when it
        does not offer one); the size."""
        size = await store_unhashed(self.cold, key, chunks)
        await self.evict(key)
        return size

    async def get(
        self, key: str, *, start: int = 0, end: int | None = None
    ) -> AsyncIterator[bytes]:
        """From the hot tier when it holds ``key``; else from the cold tier, filling the hot
        tier on the way for a read from the start to the end (see the module)."""
        await self._load()
        fill = self._fills.get(key)
        if fill is not None:  # another reader is filling it: read what it leaves
            await fill.done.wait()
        if key in self._held:
            try:
                stream = await self.hot.get(key, start=start, end=end)
            except BlobNotFound:  # removed behind our back (another process sharing it)
                self._forget(key)
            else:
                self._held.move_to_end(key)
                self.stats.hits += 1
                self._count("hit")
                return stream
        self.stats.misses += 1
        self._count("miss")
        if start > 0 or key in self._fills:
            return await self.cold.get(key, start=start, end=end)
        # Registered before the first await, so that a reader arriving meanwhile waits.
        fill = self._fills[key] = _Fill()
        try:
            partial = end is not None and end < await self.cold.head(key)
            stream = await self.cold.get(key, start=start, end=end)
        except BaseException:
            self._end_fill(key, fill)
            raise
        if partial:
            self._end_fill(key, fill)
            return stream
        filling = self._filling(key, stream, fill)
        weakref.finalize(filling, self._unstarted, key, fill)
        return filling

    async def head(self, key: str) -> int:
        """The size the hot tier recorded, else the cold tier's answer."""
        await self._load()
        size = self._held.get(key)
        return size if size is not None else await self.cold.head(key)

    async def delete(self, key: str) -> None:
        """Remove from the hot tier, then from the cold one."""
        await self.evict(key)
        await self.cold.delete(key)

    async def aclose(self) -> None:
        """Close both tiers."""
        try:
            await self.hot.aclose()
        finally:
            await self.cold.aclose()

    async def evict(self, key: str) -> None:
        """Drop the hot tier's copy of ``key``, if it has one (the cold tier keeps it)."""
        self._forget(key)
        await self.hot.delete(key)

    async def iter_keys(self, *, modified_before: float) -> AsyncIterator[str]:
        """The cold tier's keys (nothing when it cannot list, `ListableStorage`)."""
        if isinstance(self.cold, ListableStorage):
            async for key in self.cold.iter_keys(modified_before=modified_before):
                yield key

    async def remove_partials(self, *, modified_before: float) -> int:
        """The cold tier's clean-up (0 when it cannot list)."""
        if isinstance(self.cold, ListableStorage):
            return await self.cold.remove_partials(modified_before=modified_before)
        return 0

    def _forget(self, key: str) -> None:
        size = self._held.pop(key, None)
        if size is not None:
            self.stats.bytes -= size
            self.stats.objects -= 1
            self._count("removal")

    async def _load(self) -> None:
        """Take stock, once, of what the hot tier holds from before (a cache directory kept
        across restarts), evicting down to the bound; its dead partial writes are removed."""
        if self._loaded:
            return
        async with self._loading:
            if self._loaded:
                return
            if isinstance(self.hot, ListableStorage):
                await self.hot.remove_partials(modified_before=math.inf)
                async for key in self.hot.iter_keys(modified_before=math.inf):
                    with contextlib.suppress(BlobNotFound):
                        size = await self.hot.head(key)
                        self._held[key] = size
                        self.stats.bytes += size
                        self.stats.objects += 1
                await self._make_room(0)
            self._loaded = True

    async def _make_room(self, needed: int) -> bool:
        """Evict the least recently used objects until ``needed`` more bytes fit; False
        when they cannot."""
        while self._held and self.stats.bytes + self._reserved + needed > self.max_bytes:
            key, _ = next(iter(self._held.items()))
            await self.evict(key)
            self.stats.evictions += 1
            self._count("eviction")
        return self.stats.bytes + self._reserved + needed <= self.max_bytes

    async def _filling(
        self, key: str, stream: AsyncIterator[bytes], fill: _Fill
    ) -> AsyncIterator[bytes]:
        """Yield the cold tier's ``stream`` while the hot tier's put of ``key`` takes the same
        chunks; the put is abandoned unless every chunk reached it.

        Reads one chunk ahead, so that the put is committed before the last chunk is
        yielded: a reader that stops once it has every byte, without asking for more, still
        leaves the object in the hot tier, and the next reader finds it there."""
        fill.started = True
        send, receive = anyio.create_memory_object_stream[bytes](1)
        writer = asyncio.get_running_loop().create_task(self._store(key, receive, fill))
        try:
            chunk = await anext(stream, None)
            while chunk is not None:
                following = await anext(stream, None)
                if not fill.dropped and await self._reserve(fill, len(chunk)):
                    try:
                        await send.send(chunk)
                    except anyio.BrokenResourceError:  # the hot tier's put failed
                        fill.dropped = True
                if following is None:
                    await self._commit(fill, send, writer)
                yield chunk
                chunk = following
            if not fill.complete:  # an empty object
                await self._commit(fill, send, writer)
        finally:
            with anyio.CancelScope(shield=True):
                send.close()  # the put commits only if ``fill.complete``
                with contextlib.suppress(Exception):
                    await writer
                self._end_fill(key, fill)
                closer = getattr(stream, "aclose", None)
                if closer is not None:
                    with contextlib.suppress(Exception):
                        await closer()

    @staticmethod
    async def _commit(
        fill: _Fill, send: MemoryObjectSendStream[bytes], writer: asyncio.Task[None]
    ) -> None:
        """Every chunk has been sent: let the hot tier's put finish, and wait for it."""
        fill.complete = not fill.dropped
        send.close()
        with contextlib.suppress(Exception):
            await asyncio.shield(writer)

    def _end_fill(self, key: str, fill: _Fill) -> None:
        """Release what ``fill`` reserved, and the readers waiting for it."""
        if self._fills.get(key) is fill:
            del self._fills[key]
        self._reserved -= fill.reserved
        fill.reserved = 0
        fill.done.set()

    def _unstarted(self, key: str, fill: _Fill) -> None:
        """A fill's stream was dropped without being read: nothing to wait for."""
        if not fill.started:
            self._end_fill(key, fill)

    async def _reserve(self, fill: _Fill, size: int) -> bool:
        """Room in the hot tier for ``size`` more bytes of ``fill``, evicting to make it;
        False (and the fill dropped) when it cannot fit."""
        if not await self._make_room(size):
            fill.dropped = True
            return False
        fill.reserved += size
        self._reserved += size
        return True

    async def _store(
        self, key: str, receive: anyio.abc.ObjectReceiveStream[bytes], fill: _Fill
    ) -> None:
        async def chunks() -> AsyncIterator[bytes]:
            async with receive:
                async for chunk in receive:
                    yield chunk
            if not fill.complete:
                raise _FillAbandoned

        try:
            size = await store_unhashed(self.hot, key, chunks())
        except (_FillAbandoned, OpenAIFilesError, OSError) as exc:
            self.stats.abandoned_fills += 1
            self._count("abandoned_fill")
            if not isinstance(exc, _FillAbandoned):
                log.warning("openai-files: the hot tier could not keep an object: %s", exc)
            return
        self._held[key] = size
        self.stats.bytes += size
        self.stats.objects += 1
        self.stats.fills += 1
        self._count("fill")
