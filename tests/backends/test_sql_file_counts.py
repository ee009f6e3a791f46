"""The SQL store's counts of active files (schema version 4): tables of version 3 are
upgraded in place with every owner's active files counted by purpose, and the counts go on
from there as if the store had made them.

That the counts follow every change of a file's state is the conformance suite's
``test_counts_follow_every_change_of_a_files_state``; that reading them counts no files is
the scale benchmark's figure.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from sqlalchemy import insert, update

from openai_files import SQLMetadataStore
from openai_files.metadata.sql_migrations import upgrade
from openai_files.testing.metadata import make_record

from ..databases import SQL_KINDS, any_sql_store, upgraded_replica

NOW = 1_800_000_000  # the conformance records' time (`make_record`)
T0 = NOW * 1_000_000
pytestmark = pytest.mark.anyio


@pytest.fixture(params=SQL_KINDS)
async def store(request: pytest.FixtureRequest, sqlite_url: str) -> AsyncIterator[SQLMetadataStore]:
    async with any_sql_store(request.param, sqlite_url) as store:
        yield store


async def test_tables_of_version_3_are_upgraded_with_every_owners_active_files_counted(
    store: SQLMetadataStore,
) -> None:
    await store.create_schema()
    tables = store.tables
    records = [
        make_record(purpose="batch"),
        make_record(created_us=T0 + 1, purpose="vision"),
        make_record(created_us=T0 + 2, purpose="vision"),
        make_record(created_us=T0 + 3, state="pending"),
        make_record(created_us=T0 + 4, state="deleted"),
        make_record(created_us=T0 + 5, state="deleting"),
        make_record("bob", created_us=T0 + 6),
    ]
    async with store.engine.begin() as connection:  # back to version 3: no counts
        await connection.run_sync(lambda sync: tables.counts.drop(sync))
        await connection.execute(update(tables.version).values(version=3))
        for record in records:
            await connection.execute(insert(tables.files).values(**vars(record)))
    async with upgraded_replica(store) as replica:

        async def counts() -> tuple[int, int, int, int]:
            return (
                await replica.count("alice", now=NOW),
                await replica.count("alice", now=NOW, purpose="batch"),
                await replica.count("alice", now=NOW, purpose="vision"),
                await replica.count("bob", now=NOW),
            )

        assert await counts() == (3, 1, 2, 1)
        async with replica.engine.connect() as connection:  # a step run again changes nothing
            await connection.run_sync(upgrade, replica.tables, 3)
        assert await counts() == (3, 1, 2, 1)
        await replica.commit(records[3].replace(state="active"))  # pending before the upgrade
        assert await counts() == (4, 2, 2, 1)
        assert await replica.begin_delete("alice", records[1].id, now=NOW) is not None
        assert await counts() == (3, 2, 1, 1)
