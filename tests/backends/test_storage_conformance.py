"""The storage conformance suite over every built-in storage backend."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from openai_files import LocalStorage, MemoryStorage
from openai_files.storage.base import Storage
from openai_files.testing import StorageConformance

from ..support import stored_files


class TestMemoryStorage(StorageConformance):
    @pytest.fixture
    async def storage(self) -> AsyncIterator[MemoryStorage]:
        storage = MemoryStorage()
        yield storage
        await storage.aclose()

    async def leftovers(self, storage: Storage) -> list[str]:
        assert isinstance(storage, MemoryStorage)
        return storage.keys()


class TestLocalStorage(StorageConformance):
    @pytest.fixture
    async def storage(self, tmp_path: Path) -> AsyncIterator[LocalStorage]:
        storage = LocalStorage(tmp_path / "blobs", block_size=256 * 1024)
        yield storage
        await storage.aclose()

    async def leftovers(self, storage: Storage) -> list[str]:
        assert isinstance(storage, LocalStorage)
        return stored_files(storage.root)


@pytest.mark.parametrize(
    "key", ["../escape", "/etc/passwd", "aa/../../x", "", "aa//bb", ".hidden", "a\x00b"]
)
def test_local_storage_refuses_keys_that_are_not_plain_relative_paths(
    tmp_path: Path, key: str
) -> None:
    storage = LocalStorage(tmp_path)
    with pytest.raises(ValueError, match="invalid storage key"):
        storage.path_for(key)
