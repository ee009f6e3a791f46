"""`SQLMetadataStore` beyond the conformance suite: engines, prefixes and schema versions."""

from __future__ import annotations

import pytest
from sqlalchemy import inspect, update
from sqlalchemy.ext.asyncio import create_async_engine

from openai_files import BackendUnavailable, SQLMetadataStore
from openai_files.metadata.sql import SCHEMA_VERSION
from openai_files.testing import make_record

pytestmark = pytest.mark.anyio


async def test_a_host_engine_keeps_the_tables_in_its_database_under_a_prefix(
    sqlite_url: str,
) -> None:
    engine = create_async_engine(sqlite_url)
    store = SQLMetadataStore(engine, table_prefix="gateway_files_")
    record = make_record()
    await store.insert(record)
    await store.aclose()  # does not dispose an engine it was given
    async with engine.connect() as connection:
        tables = await connection.run_sync(lambda sync: inspect(sync).get_table_names())
    assert {"gateway_files_files", "gateway_files_schema_version"} <= set(tables)
    again = SQLMetadataStore(engine, table_prefix="gateway_files_")
    assert await again.get(record.owner, record.id, now=0) == record
    await engine.dispose()


async def test_two_prefixes_in_one_database_are_independent(sqlite_url: str) -> None:
    first = SQLMetadataStore(sqlite_url, table_prefix="a_")
    second = SQLMetadataStore(sqlite_url, table_prefix="b_")
    await first.insert(make_record())
    assert await second.list("alice", now=0, limit=10) == []
    await first.aclose()
    await second.aclose()


async def test_a_database_with_a_newer_schema_is_refused_with_a_clear_error(
    sqlite_url: str,
) -> None:
    store = SQLMetadataStore(sqlite_url)
    await store.create_schema()
    async with store.engine.begin() as connection:
        await connection.execute(update(store.tables.version).values(version=SCHEMA_VERSION + 1))
    await store.aclose()
    newer = SQLMetadataStore(sqlite_url)
    with pytest.raises(BackendUnavailable, match="newer than this release"):
        await newer.list("alice", now=0, limit=1)
    await newer.aclose()


async def test_an_unreachable_database_is_backend_unavailable() -> None:
    store = SQLMetadataStore("postgresql+asyncpg://nobody@127.0.0.1:1/none")
    with pytest.raises(BackendUnavailable, match="metadata database"):
        await store.get("alice", "file-x", now=0)
    await store.aclose()


async def test_sqlite_runs_in_wal_mode(sqlite_url: str) -> None:
    store = SQLMetadataStore(sqlite_url)
    await store.create_schema()
    async with store.engine.connect() as connection:
        mode = (await connection.exec_driver_sql("PRAGMA journal_mode")).scalar()
    assert mode == "wal"
    await store.aclose()
