"""The SQL store's owner indexes (schema version 6) end with the columns that decide whether a
client sees a file, so an offset page judges the rows it skips from the index; tables of
version 5 are upgraded in place, by replicas starting together, and page as before.

What that saves is the scale benchmark's figure (``total + offset 1,000 / first page``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from sqlalchemy import Connection, Index, insert, inspect, update

from openai_files import SQLMetadataStore
from openai_files.metadata.sql_migrations import upgrade
from openai_files.metadata.sql_schema import VISIBILITY, Tables
from openai_files.testing.metadata import make_record

from ..databases import SQL_KINDS, any_sql_store, upgraded_replica

NOW = 1_800_000_000  # the conformance records' time (`make_record`)
T0 = NOW * 1_000_000
pytestmark = pytest.mark.anyio

OWNER_INDEXES = {
    "files_by_owner": ["owner", "created_us", "id"],
    "files_by_owner_purpose": ["owner", "purpose", "created_us", "id"],
}
"""The owner's indexes as version 5 made them."""


@pytest.fixture(params=SQL_KINDS)
async def store(request: pytest.FixtureRequest, sqlite_url: str) -> AsyncIterator[SQLMetadataStore]:
    async with any_sql_store(request.param, sqlite_url) as store:
        yield store


def _owner_indexes(connection: Connection, tables: Tables) -> dict[str, list[str]]:
    prefix = tables.files.name.removesuffix("files")
    return {
        str(index["name"]).removeprefix(prefix): [str(column) for column in index["column_names"]]
        for index in inspect(connection).get_indexes(tables.files.name)
        if str(index["name"]).removeprefix(prefix) in OWNER_INDEXES
    }


def _back_to_version_5(connection: Connection, tables: Tables) -> None:
    """The owner's indexes rebuilt as version 5 made them, the version row at 5."""
    prefix = tables.files.name.removesuffix("files")
    for index in list(tables.files.indexes):
        name = str(index.name).removeprefix(prefix)
        if name in OWNER_INDEXES:
            index.drop(connection)
            columns = [tables.files.c[column] for column in OWNER_INDEXES[name]]
            old = Index(index.name, *columns)  # bound to the table by its columns: taken off
            old.create(connection)
            tables.files.indexes.discard(old)
    connection.execute(update(tables.version).values(version=5))


async def test_a_new_stores_owner_indexes_end_with_the_columns_of_visibility(
    store: SQLMetadataStore,
) -> None:
    await store.create_schema()
    async with store.engine.connect() as connection:
        found = await connection.run_sync(_owner_indexes, store.tables)
    assert found == {name: [*columns, *VISIBILITY] for name, columns in OWNER_INDEXES.items()}


async def test_tables_of_version_5_get_the_new_owner_indexes_and_page_as_before(
    store: SQLMetadataStore,
) -> None:
    await store.create_schema()
    tables = store.tables
    records = [
        make_record(created_us=T0 + step, purpose="vision" if step % 3 else "batch")
        for step in range(12)
    ]
    records += [
        make_record(created_us=T0 + 20, state="pending"),
        make_record(created_us=T0 + 21, state="deleting"),
        make_record(created_us=T0 + 22, expires_at=NOW - 1),  # expired, not yet swept
        make_record("bob", created_us=T0 + 23),
    ]
    async with store.engine.begin() as connection:
        await connection.run_sync(_back_to_version_5, tables)
        for record in records:
            await connection.execute(insert(tables.files).values(**vars(record)))
        assert await connection.run_sync(_owner_indexes, tables) == OWNER_INDEXES
    async with upgraded_replica(store) as replica:
        async with replica.engine.connect() as connection:
            indexes = await connection.run_sync(_owner_indexes, tables)
        assert indexes == {name: [*columns, *VISIBILITY] for name, columns in OWNER_INDEXES.items()}

        visible = sorted(records[:12], key=lambda record: record.created_us, reverse=True)
        vision = [record for record in visible if record.purpose == "vision"]

        async def pages() -> list[list[str]]:
            return [
                [
                    record.id
                    for record in await replica.list_at("alice", now=NOW, offset=2, limit=5)
                ],
                [
                    record.id
                    for record in await replica.list_at(
                        "alice", now=NOW, purpose="vision", offset=1, limit=4
                    )
                ],
                [record.id for record in await replica.list("alice", now=NOW, limit=20)],
            ]

        expected = [
            [record.id for record in visible[2:7]],
            [record.id for record in vision[1:5]],
            [record.id for record in visible],
        ]
        assert await pages() == expected
        async with replica.engine.connect() as connection:  # a step run again changes nothing
            await connection.run_sync(upgrade, replica.tables, 5)
            assert await connection.run_sync(_owner_indexes, tables) == indexes
        assert await pages() == expected
        assert await replica.begin_delete("alice", visible[3].id, now=NOW) is not None
        assert [
            record.id for record in await replica.list_at("alice", now=NOW, offset=2, limit=5)
        ] == [record.id for record in visible[2:3] + visible[4:8]]
