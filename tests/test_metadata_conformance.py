"""The metadata conformance suite over every built-in metadata store."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from openai_files import MemoryMetadataStore, SQLMetadataStore
from openai_files.testing import MetadataConformance


class TestMemoryMetadataStore(MetadataConformance):
    @pytest.fixture
    async def metadata(self) -> AsyncIterator[MemoryMetadataStore]:
        store = MemoryMetadataStore()
        yield store
        await store.aclose()


class TestSQLiteMetadataStore(MetadataConformance):
    @pytest.fixture
    async def metadata(self, sqlite_url: str) -> AsyncIterator[SQLMetadataStore]:
        store = SQLMetadataStore(sqlite_url)
        yield store
        await store.aclose()
