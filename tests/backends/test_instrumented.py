"""Instrumented backends pass the conformance suites unchanged, keep the capabilities of what
they wrap, and report each operation with its time and whether it failed."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from openai_files import LocalStorage, MemoryMetadataStore, SQLMetadataStore
from openai_files._instrumented import instrumented
from openai_files.errors import BackendUnavailable, BlobNotFound
from openai_files.metadata.base import MetadataStore, OffsetPaging, StatusUpdates, UsageListing
from openai_files.storage.base import AppendableStorage, ComposableStorage, ListableStorage, Storage
from openai_files.testing import FaultyStorage, MetadataConformance, StorageConformance

from ..support import stored_files

Seen = list[tuple[str, str, bool]]


def noted(seen: Seen) -> object:
    def observe(backend: str, operation: str, seconds: float, failed: bool) -> None:
        assert seconds >= 0
        seen.append((backend, operation, failed))

    return observe


class TestInstrumentedLocalStorage(StorageConformance):
    @pytest.fixture
    async def storage(self, tmp_path: Path) -> AsyncIterator[Storage]:
        inner = LocalStorage(tmp_path / "blobs", block_size=256 * 1024)
        storage = instrumented(inner, lambda *_: None, kind="storage")
        yield storage
        await storage.aclose()

    async def leftovers(self, storage: Storage) -> list[str]:
        return stored_files(storage.root)  # type: ignore[attr-defined]


class TestInstrumentedSQLiteMetadataStore(MetadataConformance):
    @pytest.fixture
    async def metadata(self, sqlite_url: str) -> AsyncIterator[MetadataStore]:
        store = instrumented(SQLMetadataStore(sqlite_url), lambda *_: None, kind="metadata")
        yield store
        await store.aclose()


def test_the_wrapper_has_the_capabilities_of_what_it_wraps(tmp_path: Path) -> None:
    local = instrumented(LocalStorage(tmp_path), lambda *_: None, kind="storage")
    assert isinstance(local, Storage)
    assert isinstance(local, ListableStorage)
    assert isinstance(local, ComposableStorage)
    assert isinstance(local, AppendableStorage)
    memory = instrumented(MemoryMetadataStore(), lambda *_: None, kind="metadata")
    assert isinstance(memory, MetadataStore)
    assert isinstance(memory, UsageListing)
    assert isinstance(memory, OffsetPaging) == isinstance(MemoryMetadataStore(), OffsetPaging)
    assert isinstance(memory, StatusUpdates) == isinstance(MemoryMetadataStore(), StatusUpdates)


@pytest.mark.anyio
async def test_each_operation_is_reported_failures_as_failed_answers_not(tmp_path: Path) -> None:
    seen: Seen = []
    faulty = FaultyStorage(LocalStorage(tmp_path))
    storage = instrumented(faulty, noted(seen), kind="storage")  # type: ignore[arg-type]
    with pytest.raises(BlobNotFound):
        await storage.head("aa/bb/missing")
    faulty.down = True
    with pytest.raises(BackendUnavailable):
        await storage.head("aa/bb/missing")
    assert seen == [("storage", "head", False), ("storage", "head", True)]
