"""On PostgreSQL a file's `insert` without an idempotency key is one statement, committed by the
server on its own (`OneStatementWrites.insert_counted`): the owner's usage row grown under the
quota, the file row written and, for an active file, the owner's count of active files of its
purpose grown, or none of them. Whatever it cannot do (the owner's first file, a quota that refuses,
an id that exists) it leaves unchanged, and the insert's transaction does it or says why, as
on every other database. Counted as in test_sql_round_trips; no timing is asserted."""

from __future__ import annotations

from collections.abc import AsyncIterator

import anyio
import pytest
from sqlalchemy.ext.asyncio import create_async_engine

from openai_files import SQLMetadataStore
from openai_files.errors import Conflict, QuotaExceeded
from openai_files.metadata.base import FileRecord, Quota

from ..databases import counted, sql_store
from .sql_records import NOW, OWNER, QUOTA, created, pending

pytestmark = pytest.mark.anyio


@pytest.fixture
async def store() -> AsyncIterator[SQLMetadataStore]:
    async with sql_store("postgresql") as served:
        yield served


def small(index: int, size: int = 1024) -> FileRecord:
    """An active record of `OWNER`, recorded in one step as a small upload is."""
    return pending(index).replace(state="active", bytes=size, status="processed")


async def _totals(store: SQLMetadataStore) -> tuple[int, int, int]:
    """The owner's usage (files, bytes) and count of active files."""
    usage = await store.usage(OWNER)
    return usage.files, usage.bytes, await store.count(OWNER, now=NOW)


async def test_a_create_is_one_statement_that_counts_the_file(store: SQLMetadataStore) -> None:
    first = await created(store)
    record = small(1)
    with counted(store) as tally:
        assert await store.insert(record, quota=QUOTA) == record.id
    assert len(tally.statements) == 1
    assert tally.transactions == 0
    assert await store.get(OWNER, record.id, now=NOW) == record
    assert await _totals(store) == (2, first.bytes + 1024, 2)
    assert await store.count(OWNER, now=NOW, purpose="batch") == 2


async def test_an_owners_first_file_is_made_by_the_transaction(store: SQLMetadataStore) -> None:
    await store.create_schema()
    record = small(1, 10)
    with counted(store) as tally:
        assert await store.insert(record, quota=QUOTA) == record.id
    # The statement found no usage row and changed nothing; the transaction made the row.
    assert len(tally.statements) > 1
    assert tally.transactions == 1
    assert await _totals(store) == (1, 10, 1)
    assert await store.get(OWNER, record.id, now=NOW) == record


@pytest.mark.parametrize(
    ("quota", "size"), [(Quota(max_files=1, max_bytes=None), 1), (Quota(max_bytes=100), 101)]
)
async def test_a_file_past_the_quota_is_refused_and_nothing_changes(
    store: SQLMetadataStore, quota: Quota, size: int
) -> None:
    await created(store)  # one file of no bytes
    before = await _totals(store)
    record = small(1, size)
    with pytest.raises(QuotaExceeded):
        await store.insert(record, quota=quota)
    assert await _totals(store) == before
    assert await store.get(OWNER, record.id, now=NOW) is None


async def test_an_id_that_exists_is_a_conflict_and_nothing_changes(
    store: SQLMetadataStore,
) -> None:
    first = await created(store)
    before = await _totals(store)
    with pytest.raises(Conflict):
        await store.insert(small(1).replace(id=first.id), quota=QUOTA)
    assert await _totals(store) == before
    assert await store.get(OWNER, first.id, now=NOW) == first


async def test_a_pending_file_reserves_its_usage_and_is_counted_at_its_commit(
    store: SQLMetadataStore,
) -> None:
    await created(store)
    record = pending(1).replace(bytes=5)
    with counted(store) as tally:
        await store.insert(record, quota=QUOTA)
    assert (len(tally.statements), tally.transactions) == (1, 0)
    assert await _totals(store) == (2, 5, 1)  # not active yet: not in the count
    assert await store.get(OWNER, record.id, now=NOW) is None
    await store.commit(record.replace(status="processed"))
    assert await _totals(store) == (2, 5, 2)


async def test_concurrent_creates_under_a_quota_count_exactly_what_they_made(
    store: SQLMetadataStore,
) -> None:
    await created(store)
    quota = Quota(max_files=11)
    made: list[str] = []
    refused: list[int] = []

    async def create(index: int) -> None:
        try:
            made.append(await store.insert(small(index), quota=quota))
        except QuotaExceeded:
            refused.append(index)

    async with anyio.create_task_group() as group:
        for index in range(1, 21):
            group.start_soon(create, index)
    assert (len(made), len(refused)) == (10, 10)
    assert await _totals(store) == (11, 10 * 1024, 11)
    listed = await store.list(OWNER, now=NOW, limit=100)
    assert sorted(record.id for record in listed if record.id in made) == sorted(made)


async def test_a_create_after_the_database_dropped_the_connection_is_answered(
    store: SQLMetadataStore,
) -> None:
    """A pooled connection the driver knows to be closed (the database ended it) is let go
    before the statement goes out, and the create is done on a fresh one; the usage row
    counts exactly the files there are. (A statement whose connection fails under it is not
    run again, since whether it was committed is unknown: that create fails as unavailable.)"""
    await created(store)
    async with store.engine.connect() as connection:  # the pool's one connection
        pid = (await connection.exec_driver_sql("SELECT pg_backend_pid()")).scalar_one()
    killer = create_async_engine(store.engine.url)
    try:
        async with killer.connect() as connection:
            await connection.exec_driver_sql(f"SELECT pg_terminate_backend({int(pid)})")
    finally:
        await killer.dispose()
    await anyio.sleep(0.2)  # the server closes the connection
    records = [small(1), small(2)]
    for record in records:
        assert await store.insert(record, quota=QUOTA) == record.id
        assert await store.get(OWNER, record.id, now=NOW) == record
    assert await _totals(store) == (3, 2 * 1024, 3)
