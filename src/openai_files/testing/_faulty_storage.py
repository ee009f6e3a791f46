"""`FaultyStorage`: a `Storage` that fails on command (see `faults`)."""

from __future__ import annotations

import functools
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar, cast

from ..storage.base import Storage, StoredBlob, store_unhashed
from ._switchboard import RANDOM_PUT_CHUNKS, RandomFaults, Switchboard, Trigger

__all__ = ["FaultyStorage"]

_T = TypeVar("_T")


class FaultyStorage(Switchboard):
    """A `Storage` that forwards to ``inner`` and fails where it is told to.

    Switches (see `Trigger`): ``fail_put`` fails a put after its last chunk has arrived, as
    when the backend's final commit fails; ``fail_put_at_chunk`` (an int k, or None) fails
    every put as its k-th chunk arrives, until set back to None; ``fail_get`` fails opening a
    download, ``fail_read_at_chunk`` (k or None) breaks every download as its k-th chunk is
    read; ``fail_head`` and ``fail_delete`` fail those calls. ``down`` fails every call.

    A put fails by raising from the chunks it hands to ``inner``, so the inner backend's own
    clean-up on a failed put is exercised, not bypassed. Optional capabilities (listing,
    composing, presigned URLs, ``path_for``...) are those of ``inner``, forwarded without
    faults, except ``append`` (`AppendableStorage`), which fails as a put does, and
    ``put_unhashed`` (`UnhashedPuts`), offered whatever ``inner`` is, which fails as a put does.
    """

    def __init__(self, inner: Storage, *, random_faults: RandomFaults | None = None) -> None:
        self.inner = inner
        super().__init__("Storage", random_faults)
        self._switches_off()

    def _switches_off(self) -> None:
        self.fail_put: Trigger = False
        self.fail_put_at_chunk: int | None = None
        self.fail_get: Trigger = False
        self.fail_read_at_chunk: int | None = None
        self.fail_head: Trigger = False
        self.fail_delete: Trigger = False

    def __repr__(self) -> str:
        return f"FaultyStorage({self.inner!r})"

    def __getattr__(self, name: str) -> Any:
        inner = self.__dict__.get("inner")
        if inner is None or name.startswith("__"):
            raise AttributeError(name)
        if name == "append" and hasattr(inner, "append"):
            return self._append
        return getattr(inner, name)

    async def _append(
        self, key: str, chunks: AsyncIterable[bytes], *, offset: int
    ) -> StoredBlob | None:
        """The inner storage's ``append``, failing where a put would (``fail_put``,
        ``fail_put_at_chunk``, ``down``); a lost reply is not simulated."""
        if self.down:
            raise self._fault("put")
        at_chunk, at_end = self.fail_put_at_chunk, self._take("put")
        if at_chunk is None and not at_end and self._random("put"):
            assert self.random_faults is not None
            at_end, at_chunk = True, self.random_faults.rng.randint(1, RANDOM_PUT_CHUNKS)
        inner: Any = self.inner
        if at_chunk is None and not at_end:
            return cast("StoredBlob | None", await inner.append(key, chunks, offset=offset))
        failing = _counted(chunks, at_chunk, self, fail_at_end=at_end)
        return cast("StoredBlob | None", await inner.append(key, failing, offset=offset))

    async def put(self, key: str, chunks: AsyncIterable[bytes]) -> StoredBlob:
        return await self._put(key, chunks, self.inner.put)

    async def put_unhashed(self, key: str, chunks: AsyncIterable[bytes]) -> int:
        """The inner storage's put without a hash (`UnhashedPuts`; its `Storage.put` when it
        has none), failing as `put` does."""
        return await self._put(key, chunks, functools.partial(store_unhashed, self.inner))

    async def _put(
        self,
        key: str,
        chunks: AsyncIterable[bytes],
        store: Callable[[str, AsyncIterable[bytes]], Awaitable[_T]],
    ) -> _T:
        if self.down:
            raise self._fault("put")
        at_chunk, at_end = self.fail_put_at_chunk, self._take("put")
        lost = "put" in self.lost_replies
        if at_chunk is None and not at_end and self._random("put"):
            assert self.random_faults is not None
            at_end = True
            if not lost:
                at_chunk = self.random_faults.rng.randint(1, RANDOM_PUT_CHUNKS)
        if at_end and lost:
            await store(key, _counted(chunks, at_chunk, self))
            raise self._fault("put", "after the object was stored")
        if at_chunk is None and not at_end:
            return await store(key, chunks)
        return await store(key, _counted(chunks, at_chunk, self, fail_at_end=at_end))

    async def get(
        self, key: str, *, start: int = 0, end: int | None = None
    ) -> AsyncIterator[bytes]:
        if self._fails("get"):  # a lost reply would leak an open stream: there is none
            raise self._fault("get")
        stream = await self.inner.get(key, start=start, end=end)
        if self.fail_read_at_chunk is None:
            return stream
        return _broken_stream(stream, self.fail_read_at_chunk, self)

    async def head(self, key: str) -> int:
        return await self._call("head", lambda: self.inner.head(key))

    async def delete(self, key: str) -> None:
        await self._call("delete", lambda: self.inner.delete(key))

    async def aclose(self) -> None:
        await self.inner.aclose()


async def _counted(
    chunks: AsyncIterable[bytes],
    fail_at: int | None,
    faults: FaultyStorage,
    *,
    fail_at_end: bool = False,
) -> AsyncIterator[bytes]:
    """``chunks``, failing as chunk number ``fail_at`` arrives, or after the last one."""
    count = 0
    async for chunk in chunks:
        count += 1
        if count == fail_at:
            raise faults._fault("put", f"at chunk {count}")
        yield chunk
    if fail_at_end:
        raise faults._fault("put", f"after the last chunk ({count})")


async def _broken_stream(
    stream: AsyncIterator[bytes], fail_at: int, faults: FaultyStorage
) -> AsyncIterator[bytes]:
    """``stream``, breaking as chunk number ``fail_at`` is read; closes ``stream`` however
    it ends."""
    try:
        count = 0
        async for chunk in stream:
            count += 1
            if count == fail_at:
                raise faults._fault("get", f"while reading chunk {count}")
            yield chunk
    finally:
        closer = getattr(stream, "aclose", None)
        if closer is not None:
            await closer()
