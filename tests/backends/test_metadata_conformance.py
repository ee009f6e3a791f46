"""The metadata conformance suite over every built-in metadata store."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from openai_files import MemoryMetadataStore, SQLMetadataStore
from openai_files.testing import MetadataConformance

from ..databases import sql_store


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


class TestPostgreSQLMetadataStore(MetadataConformance):
    @pytest.fixture
    async def metadata(self) -> AsyncIterator[SQLMetadataStore]:
        async with sql_store("postgresql") as store:
            yield store


class TestMariaDBMetadataStore(MetadataConformance):
    @pytest.fixture
    async def metadata(self) -> AsyncIterator[SQLMetadataStore]:
        async with sql_store("mariadb") as store:
            yield store
