"""`StorageConformance`: the behaviour every `Storage` backend must show."""

from __future__ import annotations

import hashlib
import math
import os
import time
import urllib.request
from collections.abc import AsyncIterator, Iterable

import anyio
import anyio.to_thread
import pytest

from ..errors import BlobNotFound
from ..storage.base import (
    ComposableStorage,
    ListableStorage,
    MappedReads,
    PresignedURLs,
    Storage,
    UnhashedPuts,
)

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


async def fetch(url: str) -> bytes:
    """The body of a GET of ``url`` (``http``, ``https`` or ``data``), bypassing proxies."""

    def get() -> bytes:
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        with opener.open(url, timeout=30) as response:
            body: bytes = response.read()
            return body

    return await anyio.to_thread.run_sync(get)


async def listed(storage: ListableStorage, modified_before: float) -> list[str]:
    return sorted([key async for key in storage.iter_keys(modified_before=modified_before)])


class StorageConformance:
    """Subclass with a ``storage`` fixture and a `leftovers` method.

    The cases cover every method of `Storage` and of its capabilities `PresignedURLs`,
    `ListableStorage`, `ComposableStorage`, `UnhashedPuts` and `MappedReads` (a case for a
    capability the backend lacks is skipped).
    """

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

    async def test_aclose_releases_a_storage_that_was_used_and_may_be_repeated(
        self, storage: Storage
    ) -> None:
        """Closing ends the storage's use; a second close (the fixture's, here) is harmless."""
        await storage.put("aa/bb/closing", chunked(b"bytes"))
        with anyio.fail_after(30):
            await storage.aclose()

    # -- optional capabilities ---------------------------------------------------------------

    async def test_a_presigned_url_serves_the_exact_bytes(self, storage: Storage) -> None:
        if not isinstance(storage, PresignedURLs):
            pytest.skip(f"{type(storage).__name__} does not presign URLs (optional)")
        data = os.urandom(300_000)
        await storage.put("aa/bb/shared", chunked(data))
        url = await storage.presigned_url("aa/bb/shared", expires_in=60)
        assert await fetch(url) == data

    async def test_iter_keys_lists_the_objects_written_before_the_time_given(
        self, storage: Storage
    ) -> None:
        if not isinstance(storage, ListableStorage):
            pytest.skip(f"{type(storage).__name__} does not list keys (optional)")
        keys = ["aa/bb/one", "aa/cc/two", "dd/ee/three"]
        for key in keys:
            await storage.put(key, chunked(key.encode()))
        await storage.delete("aa/cc/two")
        assert await listed(storage, math.inf) == ["aa/bb/one", "dd/ee/three"]
        assert await listed(storage, time.time() - 3600) == []

    async def test_remove_partials_leaves_every_complete_object(self, storage: Storage) -> None:
        """With no put interrupted, nothing is partial: nothing is removed and 0 returned."""
        if not isinstance(storage, ListableStorage):
            pytest.skip(f"{type(storage).__name__} does not list keys (optional)")
        await storage.put("aa/bb/whole", chunked(os.urandom(1024 * 1024)))
        with pytest.raises(RuntimeError, match="client went away"):
            await storage.put("aa/bb/broken", failing([b"x"], RuntimeError("client went away")))
        assert await storage.remove_partials(modified_before=time.time() - 3600) == 0
        assert await storage.remove_partials(modified_before=math.inf) == 0
        assert await storage.head("aa/bb/whole") == 1024 * 1024
        assert await listed(storage, math.inf) == ["aa/bb/whole"]

    async def test_compose_concatenates_the_sources_in_order_and_leaves_them(
        self, storage: Storage
    ) -> None:
        if not isinstance(storage, ComposableStorage):
            pytest.skip(f"{type(storage).__name__} does not compose objects (optional)")
        big, small = os.urandom(self.big), b"small part"
        sources = {"parts/up/big": big, "parts/up/empty": b"", "parts/up/small": small}
        for key, data in sources.items():
            await storage.put(key, chunked(data))
        order = ["parts/up/small", "parts/up/big", "parts/up/empty", "parts/up/small"]
        whole = small + big + small
        assert await storage.compose("aa/bb/whole", order) == len(whole)
        assert await read(storage, "aa/bb/whole") == whole
        assert await storage.compose("aa/bb/whole", ["parts/up/small"]) == len(small)
        assert await read(storage, "aa/bb/whole") == small  # overwritten
        for key, data in sources.items():
            assert await read(storage, key) == data  # the sources are left in place
        with pytest.raises(BlobNotFound):
            await storage.compose("cc/dd/never", ["parts/up/small", "parts/up/missing"])
        with pytest.raises(BlobNotFound):
            await storage.head("cc/dd/never")
        assert sorted(await self.leftovers(storage)) == sorted([*sources, "aa/bb/whole"])

    async def test_put_unhashed_stores_the_bytes_as_put_does_and_returns_their_size(
        self, storage: Storage
    ) -> None:
        if not isinstance(storage, UnhashedPuts):
            pytest.skip(f"{type(storage).__name__} does not put without hashing (optional)")
        data = os.urandom(self.big)
        assert await storage.put_unhashed("aa/bb/unhashed", chunked(data)) == len(data)
        assert await read(storage, "aa/bb/unhashed") == data
        assert await storage.head("aa/bb/unhashed") == len(data)
        assert await read(storage, "aa/bb/unhashed", 1000, 2_000_000) == data[1000:2_000_000]
        assert await storage.put_unhashed("aa/bb/unhashed", chunked(b"")) == 0  # overwritten
        assert await read(storage, "aa/bb/unhashed") == b""

    async def test_an_unhashed_put_that_fails_leaves_nothing_behind(self, storage: Storage) -> None:
        if not isinstance(storage, UnhashedPuts):
            pytest.skip(f"{type(storage).__name__} does not put without hashing (optional)")
        await storage.put_unhashed("aa/bb/kept", chunked(b"original"))
        chunks = [os.urandom(1024 * 1024) for _ in range(3)]
        with pytest.raises(RuntimeError, match="client went away"):
            await storage.put_unhashed(
                "aa/bb/broken", failing(chunks, RuntimeError("client went away"))
            )
        with pytest.raises(ValueError, match="boom"):
            await storage.put_unhashed("aa/bb/kept", failing([b"replacement"], ValueError("boom")))
        with pytest.raises(BlobNotFound):
            await storage.head("aa/bb/broken")
        assert await read(storage, "aa/bb/kept") == b"original"
        assert await self.leftovers(storage) == ["aa/bb/kept"]

    async def test_get_mapped_calls_the_function_on_each_block_of_the_range_in_order(
        self, storage: Storage
    ) -> None:
        if not isinstance(storage, MappedReads):
            pytest.skip(f"{type(storage).__name__} does not map reads (optional)")
        data = os.urandom(self.big)
        await storage.put("aa/bb/mapped", chunked(data))
        block, start, end = 256 * 1024, 1000, len(data) - 5
        results = [
            result
            async for result in await storage.get_mapped(
                "aa/bb/mapped",
                lambda offset, view: (offset, bytes(view)),
                start=start,
                end=end,
                block_size=block,
            )
        ]
        assert [offset for offset, _ in results] == list(range(start, end, block))
        assert all(len(piece) == block for _, piece in results[:-1])
        assert b"".join(piece for _, piece in results) == data[start:end]
        past_the_end = await storage.get_mapped(
            "aa/bb/mapped", lambda _, view: len(view), start=0, end=len(data) + 99, block_size=block
        )
        assert sum([size async for size in past_the_end]) == len(data)
        with pytest.raises(BlobNotFound):  # before any call, as `Storage.get` does
            await storage.get_mapped(
                "aa/bb/never", lambda _, view: len(view), start=0, end=10, block_size=block
            )
