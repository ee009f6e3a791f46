"""`StorageConformance`: the behaviour every `Storage` backend must show."""

from __future__ import annotations

import hashlib
import os
from collections.abc import AsyncIterator, Iterable

import anyio
import pytest

from ..errors import BlobNotFound
from ..storage.base import Storage

__all__ = ["StorageConformance"]

pytestmark = pytest.mark.anyio


async def chunked(data: bytes, size: int = 64 * 1024) -> AsyncIterator[bytes]:
    for offset in range(0, len(data), size):
        yield data[offset : offset + size]


async def failing(chunks: Iterable[bytes], error: Exception) -> AsyncIterator[bytes]:
    for chunk in chunks:
        yield chunk
    raise error


async def read(storage: Storage, key: str, start: int = 0, end: int | None = None) -> bytes:
    return b"".join([chunk async for chunk in await storage.get(key, start=start, end=end)])


class StorageConformance:
    """Subclass with a ``storage`` fixture and a `leftovers` method."""

    pytestmark = pytest.mark.anyio
    big = 3 * 1024 * 1024 + 17

    async def leftovers(self, storage: Storage) -> list[str]:
        """Every object and partial write the backend holds (temporary files, open multipart
        uploads), by any name. Override for your backend."""
        raise NotImplementedError

    async def test_put_then_get_returns_the_same_bytes_size_and_sha256(
        self, storage: Storage
    ) -> None:
        data = os.urandom(self.big)
        blob = await storage.put("aa/bb/object", chunked(data))
        assert blob.size == len(data)
        assert blob.sha256 == hashlib.sha256(data).hexdigest()
        assert await read(storage, "aa/bb/object") == data
        assert await storage.head("aa/bb/object") == len(data)

    async def test_put_of_no_bytes_stores_an_empty_object(self, storage: Storage) -> None:
        blob = await storage.put("aa/bb/empty", chunked(b""))
        assert (blob.size, blob.sha256) == (0, hashlib.sha256(b"").hexdigest())
        assert await read(storage, "aa/bb/empty") == b""
        assert await storage.head("aa/bb/empty") == 0

    async def test_get_serves_byte_ranges(self, storage: Storage) -> None:
        data = os.urandom(self.big)
        await storage.put("aa/bb/ranged", chunked(data))
        assert await read(storage, "aa/bb/ranged", 0, 1) == data[:1]
        assert await read(storage, "aa/bb/ranged", len(data) - 1) == data[-1:]
        assert await read(storage, "aa/bb/ranged", 1000, 2_000_000) == data[1000:2_000_000]
        assert await read(storage, "aa/bb/ranged", 5, len(data) + 100) == data[5:]
        assert await read(storage, "aa/bb/ranged", len(data) + 10) == b""

    async def test_get_streams_large_objects_in_several_chunks(self, storage: Storage) -> None:
        data = os.urandom(self.big)
        await storage.put("aa/bb/streamed", chunked(data))
        chunks = [chunk async for chunk in await storage.get("aa/bb/streamed")]
        assert len(chunks) > 1
        assert b"".join(chunks) == data

    async def test_missing_key_raises_blob_not_found_before_streaming(
        self, storage: Storage
    ) -> None:
        with pytest.raises(BlobNotFound):
            await storage.get("aa/bb/missing")
        with pytest.raises(FileNotFoundError):
            await storage.head("aa/bb/missing")

    async def test_delete_removes_and_is_a_no_op_for_a_missing_key(self, storage: Storage) -> None:
        await storage.put("aa/bb/gone", chunked(b"bytes"))
        await storage.delete("aa/bb/gone")
        await storage.delete("aa/bb/gone")
        await storage.delete("aa/bb/never")
        with pytest.raises(BlobNotFound):
            await storage.head("aa/bb/gone")
        assert await self.leftovers(storage) == []

    async def test_put_overwrites_an_existing_key(self, storage: Storage) -> None:
        await storage.put("aa/bb/twice", chunked(b"first"))
        await storage.put("aa/bb/twice", chunked(b"second"))
        assert await read(storage, "aa/bb/twice") == b"second"

    async def test_an_error_from_the_chunks_leaves_nothing_behind(self, storage: Storage) -> None:
        chunks = [os.urandom(1024 * 1024) for _ in range(3)]
        with pytest.raises(RuntimeError, match="client went away"):
            await storage.put("aa/bb/broken", failing(chunks, RuntimeError("client went away")))
        with pytest.raises(BlobNotFound):
            await storage.head("aa/bb/broken")
        assert await self.leftovers(storage) == []

    async def test_a_failed_put_keeps_the_previous_object_and_others(
        self, storage: Storage
    ) -> None:
        await storage.put("aa/bb/kept", chunked(b"original"))
        await storage.put("aa/bb/other", chunked(b"neighbour"))
        with pytest.raises(ValueError, match="boom"):
            await storage.put("aa/bb/kept", failing([b"replacement"], ValueError("boom")))
        assert await read(storage, "aa/bb/kept") == b"original"
        assert await read(storage, "aa/bb/other") == b"neighbour"
        assert sorted(await self.leftovers(storage)) == ["aa/bb/kept", "aa/bb/other"]

    async def test_a_cancelled_put_leaves_nothing_behind(self, storage: Storage) -> None:
        started = anyio.Event()

        async def stalled() -> AsyncIterator[bytes]:
            yield os.urandom(256 * 1024)
            started.set()
            await anyio.sleep_forever()
            yield b""  # pragma: no cover

        async with anyio.create_task_group() as group:
            group.start_soon(storage.put, "aa/bb/cancelled", stalled())
            await started.wait()
            await anyio.sleep(0.05)
            group.cancel_scope.cancel()
        with pytest.raises(BlobNotFound):
            await storage.head("aa/bb/cancelled")
        assert await self.leftovers(storage) == []

    async def test_concurrent_puts_to_different_keys_do_not_interfere(
        self, storage: Storage
    ) -> None:
        payloads = {f"cc/dd/key{index}": os.urandom(300_000 + index) for index in range(8)}
        async with anyio.create_task_group() as group:
            for key, data in payloads.items():
                group.start_soon(storage.put, key, chunked(data, 10_000))
        for key, data in payloads.items():
            assert await read(storage, key) == data
