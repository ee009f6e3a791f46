"""`UnhashedPuts`: the backends put without hashing, and the wrappers pass it on, so that an
encrypted put hashes each byte once (the plaintext) whatever wraps the storage that holds the
ciphertext, and a hot tier's fill hashes nothing."""

from __future__ import annotations

import hashlib
import os
from collections.abc import AsyncIterable, AsyncIterator, Callable
from pathlib import Path

import pytest

from openai_files import BackendUnavailable, BlobNotFound, LocalStorage, MemoryStorage
from openai_files._instrumented import instrumented
from openai_files.storage.base import (
    BlobHasher,
    Storage,
    StoredBlob,
    UnhashedPuts,
    store_unhashed,
)
from openai_files.storage.encrypted import EncryptedStorage, Keyring, MasterKey
from openai_files.storage.tiered import TieredStorage
from openai_files.testing import FaultyStorage

from ..s3_servers import S3Server
from ..support import stored_files

pytestmark = pytest.mark.anyio

KEYRING = Keyring([MasterKey("test-1", os.urandom(32))])
SIZE = 3 * 1024 * 1024 + 5


async def chunked(data: bytes, size: int = 64 * 1024) -> AsyncIterator[bytes]:
    for offset in range(0, len(data), size):
        yield data[offset : offset + size]


async def read(storage: Storage, key: str) -> bytes:
    return b"".join([chunk async for chunk in await storage.get(key)])


class PutOnly:
    """A `Storage` with the protocol's methods and no capability (a third-party backend)."""

    def __init__(self) -> None:
        self.inner = MemoryStorage()

    async def put(self, key: str, chunks: AsyncIterable[bytes]) -> StoredBlob:
        return await self.inner.put(key, chunks)

    async def get(
        self, key: str, *, start: int = 0, end: int | None = None
    ) -> AsyncIterator[bytes]:
        return await self.inner.get(key, start=start, end=end)

    async def head(self, key: str) -> int:
        return await self.inner.head(key)

    async def delete(self, key: str) -> None:
        await self.inner.delete(key)

    async def aclose(self) -> None:
        await self.inner.aclose()


@pytest.fixture
def hashed(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The size of every piece any `BlobHasher` hashes from now on."""
    sizes: list[int] = []
    update = BlobHasher.update

    def counted(self: BlobHasher, data: bytes) -> None:
        sizes.append(len(data))
        update(self, data)

    monkeypatch.setattr(BlobHasher, "update", counted)
    return sizes


def local(tmp_path: Path, request: pytest.FixtureRequest) -> Storage:
    return LocalStorage(tmp_path / "blobs", fsync=False)


def memory(tmp_path: Path, request: pytest.FixtureRequest) -> Storage:
    return MemoryStorage()


def s3(tmp_path: Path, request: pytest.FixtureRequest) -> Storage:
    server: S3Server = request.getfixturevalue("moto")
    bucket = server.create_bucket()
    request.addfinalizer(lambda: server.remove_bucket(bucket))
    return server.storage(bucket, prefix="files/")


def tiered(tmp_path: Path, request: pytest.FixtureRequest) -> Storage:
    hot = LocalStorage(tmp_path / "hot", fsync=False)
    return TieredStorage(hot, LocalStorage(tmp_path / "cold", fsync=False), max_bytes=2**30)


def faulty(tmp_path: Path, request: pytest.FixtureRequest) -> Storage:
    return FaultyStorage(LocalStorage(tmp_path / "blobs", fsync=False))


def observed(tmp_path: Path, request: pytest.FixtureRequest) -> Storage:
    inner = LocalStorage(tmp_path / "blobs", fsync=False)
    return instrumented(inner, lambda *_: None, kind="storage")


def put_only(tmp_path: Path, request: pytest.FixtureRequest) -> Storage:
    return PutOnly()


Inner = Callable[[Path, pytest.FixtureRequest], Storage]


@pytest.mark.parametrize("make", [local, memory, s3, tiered, faulty, observed])
async def test_an_encrypted_put_hashes_the_plaintext_and_not_the_ciphertext(
    make: Inner, tmp_path: Path, request: pytest.FixtureRequest, hashed: list[int]
) -> None:
    inner = make(tmp_path, request)
    assert isinstance(inner, UnhashedPuts)
    storage = EncryptedStorage(inner, KEYRING)
    data = os.urandom(SIZE)
    blob = await storage.put("aa/bb/secret", chunked(data))
    assert (blob.size, blob.sha256) == (SIZE, hashlib.sha256(data).hexdigest())
    assert sum(hashed) == SIZE  # the ciphertext is 16 bytes a segment larger, and a header
    assert await read(storage, "aa/bb/secret") == data
    await storage.aclose()


async def test_an_encrypted_storage_puts_to_one_without_the_capability_with_put(
    hashed: list[int],
) -> None:
    inner = PutOnly()
    assert not isinstance(inner, UnhashedPuts)
    storage = EncryptedStorage(inner, KEYRING)
    data = os.urandom(SIZE)
    blob = await storage.put("aa/bb/secret", chunked(data))
    assert blob.sha256 == hashlib.sha256(data).hexdigest()
    assert sum(hashed) > 2 * SIZE  # the plaintext by the wrapper, the ciphertext by ``put``
    assert await read(storage, "aa/bb/secret") == data
    assert sorted(inner.inner.keys()) == ["aa/bb/secret", "aa/bb/secret.key"]


@pytest.mark.parametrize("make", [local, memory, tiered, faulty, put_only])
async def test_store_unhashed_stores_through_any_storage_and_returns_the_size(
    make: Inner, tmp_path: Path, request: pytest.FixtureRequest, hashed: list[int]
) -> None:
    storage = make(tmp_path, request)
    data = os.urandom(SIZE)
    assert await store_unhashed(storage, "aa/bb/object", chunked(data)) == SIZE
    assert await read(storage, "aa/bb/object") == data
    assert (sum(hashed) == 0) == (make is not put_only)


async def test_an_encrypted_put_unhashed_hashes_nothing(tmp_path: Path, hashed: list[int]) -> None:
    storage = EncryptedStorage(LocalStorage(tmp_path, fsync=False), KEYRING)
    data = os.urandom(SIZE)
    assert await storage.put_unhashed("aa/bb/secret", chunked(data)) == SIZE
    assert hashed == []
    assert await read(storage, "aa/bb/secret") == data


async def test_a_hot_tier_fill_hashes_nothing(tmp_path: Path, hashed: list[int]) -> None:
    hot = LocalStorage(tmp_path / "hot", fsync=False)
    storage = TieredStorage(hot, LocalStorage(tmp_path / "cold", fsync=False), max_bytes=2**30)
    data = os.urandom(SIZE)
    await storage.put("aa/bb/object", chunked(data))
    hashed.clear()
    assert await read(storage, "aa/bb/object") == data
    assert storage.stats.fills == 1
    assert stored_files(hot.root) == ["aa/bb/object"]
    assert hashed == []


async def test_a_faulty_storage_fails_an_unhashed_put_as_it_fails_a_put(tmp_path: Path) -> None:
    inner = LocalStorage(tmp_path, fsync=False)
    storage = FaultyStorage(inner)
    storage.fail_put_at_chunk = 2
    with pytest.raises(BackendUnavailable):
        await storage.put_unhashed("aa/bb/object", chunked(os.urandom(SIZE)))
    storage.heal()
    storage.fail_put = 1
    with pytest.raises(BackendUnavailable):
        await storage.put_unhashed("aa/bb/object", chunked(os.urandom(SIZE)))
    with pytest.raises(BlobNotFound):
        await inner.head("aa/bb/object")
    assert stored_files(tmp_path) == []
    assert storage.injected["put"] == 2
    assert await storage.put_unhashed("aa/bb/object", chunked(b"bytes")) == 5


async def test_an_instrumented_storage_offers_it_when_its_backend_does(tmp_path: Path) -> None:
    seen: list[tuple[str, bool]] = []

    def observe(backend: str, operation: str, seconds: float, failed: bool) -> None:
        seen.append((operation, failed))

    storage = instrumented(LocalStorage(tmp_path, fsync=False), observe, kind="storage")
    assert isinstance(storage, UnhashedPuts)
    assert await storage.put_unhashed("aa/bb/object", chunked(b"bytes")) == 5
    assert seen == [("put_unhashed", False)]
    assert not isinstance(instrumented(PutOnly(), observe, kind="storage"), UnhashedPuts)
