"""What each hot SQL store operation costs the database, on every SQL backend: statements
(SQLAlchemy's ``before_cursor_execute`` on the store's ``statement_engines``) and transactions
(``BEGIN`` sent as a statement, ``commit`` events, and on asyncpg the driver's own ``BEGIN``).

A read (``get``, a ``list`` page, ``usage``) is one statement and no transaction (on MariaDB,
counted by the server too: no ``ROLLBACK`` follows it); a create (``insert`` +
``commit``) is two transactions, and so is a delete (``begin_delete`` + ``remove``) on SQLite,
where PostgreSQL and MariaDB run the ``remove`` of a ``deleting`` row as one statement
committed on its own (a small file's one-step create:
tests/backends/test_sql_one_step_writes.py). A regression
that adds a round trip fails here; no timing is asserted.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import anyio
import pytest
from sqlalchemy import event
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine

from openai_files import SQLMetadataStore
from openai_files.errors import QuotaExceeded
from openai_files.metadata._mysql_autocommit import autocommit_settings
from openai_files.metadata.base import Quota
from openai_files.testing._records import make_upload

from ..databases import (
    SQL_KINDS,
    any_sql_store,
    counted,
    require_database,
    sql_store,
    unique_prefix,
)
from .sql_records import NOW, OWNER, QUOTA, created, pending

pytestmark = pytest.mark.anyio


@pytest.fixture(params=SQL_KINDS)
async def store(request: pytest.FixtureRequest, sqlite_url: str) -> AsyncIterator[SQLMetadataStore]:
    async with any_sql_store(request.param, sqlite_url) as store:
        yield store


def is_mariadb(store: SQLMetadataStore) -> bool:
    return store.engine.dialect.name in ("mysql", "mariadb")


async def test_get_is_one_statement_without_a_transaction(store: SQLMetadataStore) -> None:
    record = await created(store)
    with counted(store) as tally:
        assert await store.get(OWNER, record.id, now=NOW) == record
    assert len(tally.statements) == 1
    assert tally.begins == 0
    assert tally.commits == 0


async def test_a_missing_file_costs_the_same_one_statement(store: SQLMetadataStore) -> None:
    await created(store)
    with counted(store) as tally:
        assert await store.get(OWNER, "file-missing", now=NOW) is None
    assert len(tally.statements) == 1
    assert tally.begins == 0


async def test_a_list_page_is_one_statement_without_a_transaction(
    store: SQLMetadataStore,
) -> None:
    records = [await created(store, index) for index in range(5)]
    with counted(store) as tally:
        first = await store.list(OWNER, now=NOW, limit=2)
        rest = await store.list(OWNER, now=NOW, limit=10, after=first[-1].cursor, purpose="batch")
    assert [r.id for r in first + rest] == [r.id for r in reversed(records)]
    assert len(tally.statements) == 2  # one a page
    assert tally.begins == 0
    assert tally.commits == 0


async def test_usage_is_one_statement(store: SQLMetadataStore) -> None:
    await created(store)
    with counted(store) as tally:
        assert (await store.usage(OWNER)).files == 1
    assert len(tally.statements) == 1
    assert tally.begins == 0


async def test_a_create_is_two_transactions_of_five_statements(store: SQLMetadataStore) -> None:
    await created(store)  # the owner's usage row exists, as for every upload after the first
    record = pending(1)
    with counted(store) as tally:
        await store.insert(record, quota=QUOTA)
        await store.commit(record.replace(status="processed"))
    # insert: the usage row counted under the quota, the file row (on PostgreSQL both in one
    # statement, committed on its own); commit: the reservation read, the row made active (its
    # size equal to what it reserved), the owner's count of active files of its purpose grown.
    postgres = store.engine.dialect.name == "postgresql"
    assert len(tally.statements) == (4 if postgres else 5)
    # The statement of PostgreSQL's insert is no transaction of the store's.
    assert tally.transactions == (1 if postgres else 2)


async def test_an_owners_first_file_makes_the_usage_row(store: SQLMetadataStore) -> None:
    await store.create_schema()
    record = pending(1)
    with counted(store) as tally:
        await store.insert(record, quota=QUOTA)
    assert (await store.usage(OWNER)).files == 1
    # MariaDB makes the missing row in a transaction of its own between two tries of the
    # insert (see `insert`); the others make it inside the insert's one transaction.
    assert tally.transactions == (3 if is_mariadb(store) else 1)


async def test_a_reservation_is_one_transaction_of_two_statements(
    store: SQLMetadataStore,
) -> None:
    record = pending()
    await store.insert(record, quota=QUOTA)
    with counted(store) as tally:
        assert await store.reserve(OWNER, record.id, 1024, quota=QUOTA)
    assert len(tally.statements) == 2
    assert tally.transactions == 1


async def test_opening_an_upload_is_one_transaction_of_two_statements(
    store: SQLMetadataStore,
) -> None:
    await created(store)  # the owner's usage row exists, as for every upload after the first
    with counted(store) as tally:
        await store.create_upload(make_upload(OWNER), max_open=2)
    # The open uploads counted under the limit, the upload's row: the usage row is made sure
    # of only when the count changed nothing.
    assert len(tally.statements) == 2
    assert tally.transactions == 1
    with pytest.raises(QuotaExceeded):
        await store.create_upload(make_upload(OWNER), max_open=1)
    assert (await store.usage(OWNER)).open_uploads == 1


async def test_an_owners_first_upload_makes_the_usage_row(store: SQLMetadataStore) -> None:
    await store.create_schema()
    with counted(store) as tally:
        await store.create_upload(make_upload(OWNER), max_open=1)
    assert (await store.usage(OWNER)).open_uploads == 1
    # The count found no row; the row made (on MariaDB in a transaction of its own, between
    # two tries, as for a file), then counted.
    assert tally.transactions == (3 if is_mariadb(store) else 1)
    assert len(tally.statements) == (5 if is_mariadb(store) else 4)


async def test_a_delete_is_four_statements_in_two_transactions_at_most(
    store: SQLMetadataStore,
) -> None:
    record = await created(store)
    usage = await store.usage(OWNER)
    with counted(store) as tally:
        deleting = await store.begin_delete(OWNER, record.id, now=NOW)
        assert deleting == record.replace(state="deleting", changed_at=NOW)
        await store.remove(OWNER, record.id)
    # begin_delete: marked and returned (on MariaDB, which has no UPDATE ... RETURNING, read
    # back), usage shrunk, count of active files shrunk (on PostgreSQL the three in one
    # statement, committed on its own); remove: the row deleted while ``deleting`` (it holds
    # no usage, no count and no hold any more), on PostgreSQL and MariaDB outside a
    # transaction, committed on its own.
    dialect = store.engine.dialect.name
    assert len(tally.statements) == {"sqlite": 4, "postgresql": 2}.get(dialect, 5)
    assert tally.transactions == {"sqlite": 2, "postgresql": 0}.get(dialect, 1)
    after = await store.usage(OWNER)
    assert (after.files, after.bytes) == (usage.files - 1, usage.bytes - record.bytes)
    assert await store.count(OWNER, now=NOW) == 0


async def session_counts(store: SQLMetadataStore) -> dict[str, int]:
    """MariaDB's own counts of the ``BEGIN`` (``START TRANSACTION``), ``COMMIT`` and ``ROLLBACK``
    statements its session received, read on the driver of the store's one pooled connection
    (outside SQLAlchemy, which would end a transaction of its own)."""
    async with store.engine.connect() as connection:
        driver = (await connection.get_raw_connection()).driver_connection
        assert driver is not None
        cursor = await driver.cursor()
        await cursor.execute(
            "SHOW SESSION STATUS WHERE Variable_name IN ('Com_begin', 'Com_commit', 'Com_rollback')"
        )
        rows = await cursor.fetchall()
        await cursor.close()
    return {name: int(value) for name, value in rows}


async def test_on_mariadb_a_read_is_its_statement_alone_and_a_write_begins_a_transaction() -> None:
    """The store opens MariaDB's connections in autocommit mode: no ROLLBACK round trip after a
    read; a write's transaction begins with START TRANSACTION and ends with its COMMIT."""
    url = require_database("mariadb")
    store = SQLMetadataStore(url, table_prefix=unique_prefix(), engine_options={"pool_size": 1})
    try:
        record = await created(store)
        before = await session_counts(store)
        assert await store.get(OWNER, record.id, now=NOW) == record
        assert [r.id for r in await store.list(OWNER, now=NOW, limit=10)] == [record.id]
        assert (await store.usage(OWNER)).files == 1
        assert await session_counts(store) == before
        # A read through SQLAlchemy begins no transaction either, and ends with no ROLLBACK.
        assert [owner for owner, _ in await store.list_usage(limit=10)] == [OWNER]
        assert await session_counts(store) == before
        second = pending(1)
        await store.insert(second, quota=QUOTA)
        await store.commit(second.replace(status="processed"))
        after = await session_counts(store)
        begun = after["Com_begin"] - before["Com_begin"]
        assert begun >= 2
        assert after["Com_commit"] - before["Com_commit"] == begun
        assert after["Com_rollback"] == before["Com_rollback"]
        # A transaction that is undone is rolled back on the server.
        with pytest.raises(QuotaExceeded):
            await store.insert(pending(2), quota=Quota(max_files=2))
        refused = await session_counts(store)
        assert refused["Com_rollback"] == after["Com_rollback"] + 1
        assert refused["Com_begin"] == after["Com_begin"] + 1
        assert (await store.usage(OWNER)).files == 2
        # A connection given back inside a transaction is rolled back by the pool's reset.
        async with store.engine.connect() as connection:
            driver = (await connection.get_raw_connection()).driver_connection
            assert driver is not None
            cursor = await driver.cursor()
            await cursor.execute("START TRANSACTION")
            await cursor.execute(f"UPDATE {store.tables.usage.name} SET files = files + 100")
            await cursor.close()
        assert (await store.usage(OWNER)).files == 2
    finally:
        await store.drop_schema()
        await store.aclose()


def test_a_mariadb_engine_keeps_the_drivers_autocommit_mode_where_its_options_choose() -> None:
    own = make_url("mysql+aiomysql://u@h/db")
    settings = autocommit_settings(own, {"pool_size": 15, "connect_args": {"ssl": None}})
    assert settings == {"pool_size": 15, "connect_args": {"ssl": None, "autocommit": True}}
    for chosen in ({"isolation_level": "READ COMMITTED"}, {"connect_args": {"autocommit": False}}):
        assert autocommit_settings(own, chosen) is None, chosen
    assert autocommit_settings(make_url("mysql+asyncmy://u@h/db"), {}) is None
    assert autocommit_settings(make_url("postgresql+asyncpg://u@h/db"), {}) is None


def test_a_rollback_reaches_mariadb_unless_it_reported_no_transaction_open() -> None:
    """The server's status flags (autocommit 2, in a transaction 1) of its last reply decide;
    a closed connection (no status) is rolled back as before, to fail as it always did."""
    from types import SimpleNamespace

    from pymysql.constants import SERVER_STATUS

    from openai_files.metadata._mysql_autocommit import _rollback_if_open

    def sent(status: int | None) -> bool:
        rolled: list[object] = []
        driver = SimpleNamespace(server_status=status)
        driver.get_transaction_status = lambda: bool(status & SERVER_STATUS.SERVER_STATUS_IN_TRANS)
        _rollback_if_open(rolled.append, SimpleNamespace(driver_connection=driver))
        return bool(rolled)

    autocommit = SERVER_STATUS.SERVER_STATUS_AUTOCOMMIT
    assert not sent(autocommit)
    assert sent(autocommit | SERVER_STATUS.SERVER_STATUS_IN_TRANS)
    assert sent(None)


async def test_sqlite_writers_in_one_process_take_turns_instead_of_waiting_for_the_lock(
    sqlite_url: str,
) -> None:
    """Each write transaction starts with BEGIN IMMEDIATE, and a second one begins only after
    the first has ended: none waits in SQLite's busy handler."""
    store = SQLMetadataStore(sqlite_url)
    await created(store)
    open_now, most = 0, 0

    def statement(_connection: Any, _cursor: Any, text: str, *_args: Any) -> None:
        nonlocal open_now, most
        if text == "BEGIN IMMEDIATE":
            open_now += 1
            most = max(most, open_now)

    def ended(_connection: Any) -> None:
        nonlocal open_now
        open_now -= 1

    engines = store.statement_engines
    for engine in engines:
        event.listen(engine, "before_cursor_execute", statement)
        event.listen(engine, "commit", ended)
        event.listen(engine, "rollback", ended)
    try:
        async with anyio.create_task_group() as group:
            for index in range(1, 21):
                group.start_soon(created, store, index)
        assert len(await store.list(OWNER, now=NOW, limit=100)) == 21
    finally:
        await store.aclose()
    assert most == 1, f"{most} write transactions were open at once"


@pytest.mark.parametrize("server", ["postgresql", "mariadb"])
async def test_a_read_after_the_database_dropped_the_connection_is_answered(server: str) -> None:
    """Without a ping before every checkout, a read that finds its pooled connection dead
    (the database restarted) runs once more on a fresh one instead of failing."""
    own_id = {"postgresql": "SELECT pg_backend_pid()", "mariadb": "SELECT CONNECTION_ID()"}
    kill = {"postgresql": "SELECT pg_terminate_backend({})", "mariadb": "KILL {}"}
    async with sql_store(server) as store:
        record = await created(store)
        async with store.engine.connect() as connection:  # the pool's one connection
            pid = (await connection.exec_driver_sql(own_id[server])).scalar_one()
        killer = create_async_engine(store.engine.url)
        try:
            async with killer.connect() as connection:
                await connection.exec_driver_sql(kill[server].format(int(pid)))
        finally:
            await killer.dispose()
        await anyio.sleep(0.2)  # the server closes the connection
        assert await store.get(OWNER, record.id, now=NOW) == record
