"""A storage backend in a few lines: objects in a dict, as a stand-in for the key-value store
or object store a real backend talks to. `test_dict_storage.py` runs the conformance suite
over it.

What makes it a `Storage` is the contract the suite checks, not a base class: a put streams
and is atomic (it writes to a staging entry and moves it into place only once every chunk has
arrived, and on any error or cancellation leaves nothing behind), a get raises `BlobNotFound`
before it streams, and a delete of a missing key is a no-op.
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterable, AsyncIterator

from anyio.lowlevel import checkpoint

from openai_files import BlobNotFound, StoredBlob
from openai_files.storage.base import BlobHasher, check_key


class DictStorage:
    """Objects by key in ``objects``; puts in progress in ``staging``."""

    def __init__(self, chunk_size: int = 64 * 1024) -> None:
        self.objects: dict[str, bytes] = {}
        self.staging: dict[str, list[bytes]] = {}
        self.chunk_size = chunk_size

    async def put(self, key: str, chunks: AsyncIterable[bytes]) -> StoredBlob:
        check_key(key)  # plain relative paths only, like every backend
        staged = f"{key}.{secrets.token_hex(8)}.partial"
        self.staging[staged] = parts = []
        hasher = BlobHasher()
        try:
            async for chunk in chunks:
                hasher.update(chunk)
                parts.append(chunk)
            self.objects[key] = b"".join(parts)  # the commit: all or nothing
        finally:
            del self.staging[staged]
        return hasher.result()

    async def get(
        self, key: str, *, start: int = 0, end: int | None = None
    ) -> AsyncIterator[bytes]:
        data = self.objects.get(check_key(key))
        if data is None:
            raise BlobNotFound(key)  # before the first byte, as the contract says
        return self._stream(data[start:end])

    async def _stream(self, data: bytes) -> AsyncIterator[bytes]:
        for offset in range(0, len(data), self.chunk_size):
            await checkpoint()
            yield data[offset : offset + self.chunk_size]

    async def head(self, key: str) -> int:
        data = self.objects.get(check_key(key))
        if data is None:
            raise BlobNotFound(key)
        return len(data)

    async def delete(self, key: str) -> None:
        self.objects.pop(check_key(key), None)

    async def aclose(self) -> None:
        self.objects.clear()
