"""What a small file's create and a delete's last step cost the database, on every SQL backend
(counted by `tests.databases.counted`): a file recorded in one step is one transaction, with
its quota and its idempotency key checked inside it; the removal of a ``deleting`` row is one
statement."""

from __future__ import annotations

import pytest

from openai_files import SQLMetadataStore
from openai_files.ids import inline_key

from ..databases import counted
from .sql_records import NOW, OWNER, QUOTA, created, pending
from .test_sql_round_trips import store as store  # the fixture: every SQL backend

pytestmark = pytest.mark.anyio


async def test_a_small_files_create_is_one_transaction_of_three_statements(
    store: SQLMetadataStore,
) -> None:
    await created(store)  # the owner's usage row exists, as for every upload after the first
    record = pending(1).replace(state="active", bytes=1024, status="processed")
    with counted(store) as tally:
        assert await store.insert(record, quota=QUOTA) == record.id
    # The owner's usage row counted under the quota (files and bytes), the file row, the
    # owner's count of active files of its purpose grown (MariaDB too: its usage row is made
    # apart only for the owner's first file); PostgreSQL does the three in one statement,
    # committed on its own (tests/backends/test_sql_one_statement_create_pglist.py).
    postgres = store.engine.dialect.name == "postgresql"
    assert len(tally.statements) == (1 if postgres else 3)
    assert tally.transactions == (0 if postgres else 1)
    assert await store.get(OWNER, record.id, now=NOW) == record


async def test_a_small_files_create_under_a_key_is_still_one_transaction(
    store: SQLMetadataStore,
) -> None:
    await created(store)
    record = pending(1).replace(state="active", status="processed")
    with counted(store) as tally:
        assert await store.insert(record, quota=QUOTA, idempotency_key="k") == record.id
    # The key looked up, then the three statements, then a stale key row dropped and the key
    # row written.
    assert len(tally.statements) == 6
    assert tally.transactions == 1
    again = pending(2).replace(state="active", status="processed")
    with counted(store) as tally:
        assert await store.insert(again, quota=QUOTA, idempotency_key="k") == record.id
    # The key answers: nothing else is done.
    assert len(tally.statements) == 1
    assert await store.get(OWNER, again.id, now=NOW) is None


async def test_an_owners_first_file_makes_their_usage_row(store: SQLMetadataStore) -> None:
    record = pending(1).replace(state="active", bytes=10, status="processed")
    assert await store.insert(record, quota=QUOTA) == record.id
    usage = await store.usage(OWNER)
    assert (usage.files, usage.bytes) == (1, 10)


async def test_removing_a_deleting_row_is_one_statement(store: SQLMetadataStore) -> None:
    record = await created(store)
    assert await store.begin_delete(OWNER, record.id, now=NOW) is not None
    with counted(store) as tally:
        await store.remove(OWNER, record.id)
    assert len(tally.statements) == 1
    # On PostgreSQL and MariaDB the statement runs outside a transaction, committed on its own.
    assert tally.transactions == (1 if store.engine.dialect.name == "sqlite" else 0)
    assert (await store.usage(OWNER)).files == 0
    assert await store.begin_delete(OWNER, record.id, now=NOW) is None  # gone


async def test_removing_a_pending_row_reads_it_to_give_back_its_usage(
    store: SQLMetadataStore,
) -> None:
    record = pending(1)
    await store.insert(record, quota=QUOTA)
    assert await store.reserve(OWNER, record.id, 1000, quota=QUOTA)
    await store.remove(OWNER, record.id)
    usage = await store.usage(OWNER)
    assert (usage.files, usage.bytes) == (0, 0)


async def test_a_small_file_kept_with_its_record_adds_one_statement_to_its_transaction(
    store: SQLMetadataStore,
) -> None:
    await created(store)
    record = pending(1).replace(state="active", bytes=4, status="processed")
    record = record.replace(storage_key=inline_key(record.storage_key))
    with counted(store) as tally:
        assert await store.insert_inline(record, b"\x00\xff\n\x01", quota=QUOTA) == record.id
    # The three statements of a small file's create and the bytes' row; PostgreSQL still does
    # it all in its one statement, committed on its own.
    postgres = store.engine.dialect.name == "postgresql"
    assert len(tally.statements) == (1 if postgres else 4)
    assert tally.transactions == (0 if postgres else 1)
    with counted(store) as tally:
        assert await store.read_inline(record.storage_key) == b"\x00\xff\n\x01"
    assert (len(tally.statements), tally.transactions) == (1, 0)
    with counted(store) as tally:
        assert await store.get_inline(OWNER, record.id, now=NOW) == (record, b"\x00\xff\n\x01")
    assert (len(tally.statements), tally.transactions) == (1, 0)
    with counted(store) as tally:
        await store.delete_inline(record.storage_key)
    assert len(tally.statements) == 1
    assert tally.transactions == (1 if store.engine.dialect.name == "sqlite" else 0)
    assert await store.read_inline(record.storage_key) is None
