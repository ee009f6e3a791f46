"""`EncryptedStorage` with its default segments (1 MiB sealed): a put seals batches of chunks of
any size, holding back what does not make a whole segment; a get opens a batch ahead of its
reader, and no more."""

from __future__ import annotations

import hashlib
import os
from collections.abc import AsyncIterator

import anyio
import pytest

from openai_files import MemoryStorage
from openai_files.storage.encrypted import HEADER_SUFFIX, EncryptedStorage, Keyring, MasterKey

pytestmark = pytest.mark.anyio

KEYRING = Keyring([MasterKey("test-1", os.urandom(32))])
MiB = 1024 * 1024
SEGMENT = MiB - 16


async def chunked(data: bytes, size: int) -> AsyncIterator[bytes]:
    for offset in range(0, len(data), size):
        yield data[offset : offset + size]


async def read(
    storage: EncryptedStorage, key: str, start: int = 0, end: int | None = None
) -> bytes:
    return b"".join([chunk async for chunk in await storage.get(key, start=start, end=end)])


class CountingStorage(MemoryStorage):
    """`MemoryStorage` that counts the chunks (1 MiB each) its readers have taken from
    contents (headers left out). It does not offer `MappedReads`, so that `EncryptedStorage`
    reads it through `get` and opens the segments itself."""

    taken = 0
    get_mapped = None  # type: ignore[assignment]  # a protocol's method set to None is not offered

    async def get(
        self, key: str, *, start: int = 0, end: int | None = None
    ) -> AsyncIterator[bytes]:
        stream = await super().get(key, start=start, end=end)
        return stream if key.endswith(HEADER_SUFFIX) else self._counted(stream)

    async def _counted(self, stream: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
        async for chunk in stream:
            self.taken += 1
            yield chunk


@pytest.mark.parametrize("chunk", [1, 64 * 1024, 700_000, MiB, 5 * MiB + 3])
async def test_chunks_of_any_size_are_sealed_in_whole_segments(chunk: int) -> None:
    inner = MemoryStorage()
    storage = EncryptedStorage(inner, KEYRING)
    size = 5 * MiB + 3 if chunk > 1 else 3 * SEGMENT + 5
    data = os.urandom(size)
    blob = await storage.put("aa/bb/object", chunked(data, chunk))
    assert (blob.size, blob.sha256) == (size, hashlib.sha256(data).hexdigest())
    segments = -(-size // SEGMENT)
    assert await inner.head("aa/bb/object") == size + 16 * segments
    assert await read(storage, "aa/bb/object") == data
    for start, end in [(SEGMENT - 1, SEGMENT + 1), (2 * SEGMENT, None), (size - 1, size)]:
        assert await read(storage, "aa/bb/object", start, end) == data[start:end]


async def test_a_segment_sized_object_is_sealed_as_one_segment() -> None:
    inner = MemoryStorage()
    storage = EncryptedStorage(inner, KEYRING)
    data = os.urandom(SEGMENT)
    await storage.put("aa/bb/object", chunked(data, 64 * 1024))
    assert await inner.head("aa/bb/object") == MiB
    assert await read(storage, "aa/bb/object") == data


async def test_a_download_opens_one_batch_ahead_of_its_reader() -> None:
    inner = CountingStorage()
    storage = EncryptedStorage(inner, KEYRING)
    data = os.urandom(8 * SEGMENT)
    await storage.put("aa/bb/object", chunked(data, MiB))
    stream = await storage.get("aa/bb/object")
    first = await anext(stream)
    await anyio.sleep(0.2)  # time to read ahead as far as it would
    assert first == data[:SEGMENT]
    assert inner.taken == 2  # the piece read, and the next one opened ahead
    rest = b"".join([piece async for piece in stream])
    assert first + rest == data
    assert inner.taken == 8
