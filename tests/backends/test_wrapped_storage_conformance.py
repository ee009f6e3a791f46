"""The storage conformance suite over the storage wrappers: `EncryptedStorage` on memory, local
disk and S3, `TieredStorage` (local disk over S3, memory over local disk), and both composed
(encryption over a local hot tier over S3), as the server builds them."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path

import anyio.to_thread
import pytest

from openai_files import LocalStorage, MemoryStorage
from openai_files.storage.base import Storage
from openai_files.storage.encrypted import HEADER_SUFFIX, EncryptedStorage, Keyring, MasterKey
from openai_files.storage.s3 import S3Storage
from openai_files.storage.tiered import TieredStorage
from openai_files.testing import StorageConformance

from ..s3_servers import S3Server
from ..support import stored_files

KEYRING = Keyring([MasterKey("test-1", os.urandom(32))])
SEGMENT = 64 * 1024


async def inner_leftovers(storage: Storage, server: S3Server | None) -> list[str]:
    """What a storage the wrappers wrap holds, by any name."""
    if isinstance(storage, MemoryStorage):
        return storage.keys()
    if isinstance(storage, LocalStorage):
        return stored_files(storage.root)
    if isinstance(storage, TieredStorage):
        hot = await inner_leftovers(storage.hot, server)
        return sorted(set(hot) | set(await inner_leftovers(storage.cold, server)))
    assert isinstance(storage, S3Storage)
    assert server is not None
    return await anyio.to_thread.run_sync(server.leftovers, storage)


def as_objects(names: list[str]) -> list[str]:
    """An encrypted storage's objects: each key with its header, collapsed to the key (a
    header or content alone stays as it is, and shows)."""
    found = set(names)
    whole = {n for n in found if n + HEADER_SUFFIX in found}
    return sorted((found - whole - {n + HEADER_SUFFIX for n in whole}) | whole)


class WrapperConformance(StorageConformance):
    server: S3Server | None = None

    async def leftovers(self, storage: Storage) -> list[str]:
        if isinstance(storage, EncryptedStorage):
            return as_objects(await inner_leftovers(storage.inner, self.server))
        return await inner_leftovers(storage, self.server)

    def s3(self, request: pytest.FixtureRequest) -> S3Storage:
        self.server = request.getfixturevalue("moto")
        bucket = self.server.create_bucket()
        request.addfinalizer(lambda: self.server.remove_bucket(bucket) if self.server else None)
        return self.server.storage(bucket, prefix="files/")


class TestEncryptedOverMemory(WrapperConformance):
    @pytest.fixture
    async def storage(self) -> AsyncIterator[Storage]:
        storage = EncryptedStorage(MemoryStorage(), KEYRING, segment_size=SEGMENT)
        yield storage
        await storage.aclose()


class TestEncryptedOverLocal(WrapperConformance):
    @pytest.fixture
    async def storage(self, tmp_path: Path) -> AsyncIterator[Storage]:
        storage = EncryptedStorage(LocalStorage(tmp_path / "blobs"), KEYRING)
        yield storage
        await storage.aclose()


class TestEncryptedOverS3(WrapperConformance):
    @pytest.fixture
    async def storage(self, request: pytest.FixtureRequest) -> AsyncIterator[Storage]:
        storage = EncryptedStorage(self.s3(request), KEYRING, segment_size=SEGMENT)
        yield storage
        await storage.aclose()


class TestTieredLocalOverS3(WrapperConformance):
    @pytest.fixture
    async def storage(
        self, request: pytest.FixtureRequest, tmp_path: Path
    ) -> AsyncIterator[Storage]:
        hot = LocalStorage(tmp_path / "hot", fsync=False)
        storage = TieredStorage(hot, self.s3(request), max_bytes=64 * 1024 * 1024)
        yield storage
        await storage.aclose()


class TestTieredMemoryOverLocal(WrapperConformance):
    @pytest.fixture
    async def storage(self, tmp_path: Path) -> AsyncIterator[Storage]:
        cold = LocalStorage(tmp_path / "cold")
        storage = TieredStorage(MemoryStorage(), cold, max_bytes=8 * 1024 * 1024)
        yield storage
        await storage.aclose()


class TestEncryptedOverTieredLocalOverS3(WrapperConformance):
    @pytest.fixture
    async def storage(
        self, request: pytest.FixtureRequest, tmp_path: Path
    ) -> AsyncIterator[Storage]:
        hot = LocalStorage(tmp_path / "hot", fsync=False)
        tiers = TieredStorage(hot, self.s3(request), max_bytes=64 * 1024 * 1024)
        storage = EncryptedStorage(tiers, KEYRING, segment_size=SEGMENT)
        yield storage
        await storage.aclose()
