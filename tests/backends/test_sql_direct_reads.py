"""The SQL store's hot reads on PostgreSQL and MariaDB go straight to the driver
(``_sql_direct``): a file, a list page, a count and an idempotency key are read without
SQLAlchemy's execution layer, on connections of the engine's own pool, while the engine's
cursor events still see each statement; a failure, a cancellation or a full pool leaves the
pool as sound as SQLAlchemy's own path does."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from typing import Any

import anyio
import pytest
from sqlalchemy import String, TypeDecorator, bindparam, event, select, type_coerce
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import NullPool, QueuePool

from openai_files import SQLMetadataStore
from openai_files.errors import InvalidRequest
from openai_files.metadata._sql_connect import SERVER_POOL
from openai_files.metadata._sql_direct import DirectReads, plain_statement
from openai_files.metadata.base import FileRecord
from openai_files.metadata.sql_schema import Tables

from ..databases import require_database, sql_store, unique_prefix
from .sql_records import NOW, OWNER, created

pytestmark = pytest.mark.anyio

SERVERS = ["postgresql", "mariadb"]


def test_file_records_take_their_fields_in_the_order_of_the_files_tables_columns() -> None:
    """Rows read whole are turned into records by position (``file_record``)."""
    columns = [column.name for column in Tables.named("x_").files.columns]
    assert columns == [field.name for field in dataclasses.fields(FileRecord)]


@pytest.mark.parametrize(
    "url", ["postgresql+asyncpg://u@h/db", "mysql+aiomysql://u@h/db"], ids=["asyncpg", "aiomysql"]
)
def test_a_statement_is_compiled_once_with_its_own_values_filled_in_by_position(url: str) -> None:
    dialect = create_async_engine(url).dialect
    files = Tables.named("x_").files
    query = select(files.c.id).where(
        files.c.owner == bindparam("owner"), files.c.state == "active", files.c.bytes > 5
    )
    statement = plain_statement(query, dialect)
    assert statement is not None
    assert "x_files" in statement.sql
    assert statement.arguments({"owner": "alice"}) == ("alice", "active", 5)


def test_statements_that_need_sqlalchemy_to_process_values_are_left_to_it() -> None:
    dialect = create_async_engine("postgresql+asyncpg://u@h/db").dialect
    files = Tables.named("x_").files
    expanding = select(files.c.id).where(files.c.id.in_(bindparam("ids", expanding=True)))
    assert plain_statement(expanding, dialect) is None
    sent = select(files.c.id).where(files.c.owner == bindparam("owner", type_=Lowered()))
    assert plain_statement(sent, dialect) is None
    read = select(type_coerce(files.c.owner, Lowered()))
    assert plain_statement(read, dialect) is None


class Lowered(TypeDecorator[str]):
    """A string lowered on its way to the database and back."""

    impl = String
    cache_ok = True

    def process_bind_param(self, value: str | None, dialect: Dialect) -> str | None:
        return None if value is None else value.lower()

    def process_result_value(self, value: str | None, dialect: Dialect) -> str | None:
        return None if value is None else value.lower()


def test_only_asyncpg_and_aiomysql_engines_have_direct_reads() -> None:
    assert DirectReads.of(create_async_engine("sqlite+aiosqlite://")) is None
    assert DirectReads.of(create_async_engine("postgresql+asyncpg://u@h/db")) is not None
    translated = create_async_engine("postgresql+asyncpg://u@h/db").execution_options(
        schema_translate_map={None: "elsewhere"}
    )
    assert DirectReads.of(translated) is None


@pytest.fixture(params=SERVERS)
async def store(request: pytest.FixtureRequest) -> AsyncIterator[SQLMetadataStore]:
    async with sql_store(request.param) as server:
        yield server


def checked_out(engine: AsyncEngine) -> int:
    pool = engine.sync_engine.pool
    assert isinstance(pool, QueuePool)
    return pool.checkedout()


@contextmanager
def watched(engine: AsyncEngine) -> Iterator[dict[str, list[str]]]:
    """What SQLAlchemy executed (``before_execute``: its execution layer) and what reached a
    cursor or the driver (``before_cursor_execute``) on ``engine``."""
    seen: dict[str, list[str]] = {"executed": [], "sent": []}

    def executed(_connection: Any, clause: Any, *_args: Any) -> None:
        seen["executed"].append(str(clause))

    def sent(_connection: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        seen["sent"].append(statement)

    sync = engine.sync_engine
    event.listen(sync, "before_execute", executed)
    event.listen(sync, "before_cursor_execute", sent)
    try:
        yield seen
    finally:
        event.remove(sync, "before_execute", executed)
        event.remove(sync, "before_cursor_execute", sent)


async def test_hot_reads_reach_the_driver_without_sqlalchemys_execution_layer(
    store: SQLMetadataStore,
) -> None:
    first = await created(store, 0, key="key-1")
    second = await created(store, 1)
    with watched(store.engine) as seen:
        assert await store.get(OWNER, first.id, now=NOW) == first
        assert await store.get(OWNER, "file-missing", now=NOW) is None
        assert await store.list(OWNER, now=NOW, limit=10) == [second, first]
        assert await store.list(OWNER, now=NOW, limit=10, after=second.cursor) == [first]
        assert await store.count(OWNER, now=NOW, purpose="batch") == 2
        assert await store.idempotent_file(OWNER, "key-1", since=0) == first.id
        assert await store.idempotent_file(OWNER, "key-2", since=0) is None
    assert seen["executed"] == []
    assert len(seen["sent"]) == 7
    assert all(statement.lstrip().startswith("SELECT") for statement in seen["sent"])


async def test_a_value_the_driver_cannot_send_is_an_invalid_request_on_the_same_connection(
    store: SQLMetadataStore,
) -> None:
    record = await created(store)
    assert await store.get(OWNER, record.id, now=NOW) == record  # the pool has its connection
    connects: list[object] = []
    pool = store.engine.sync_engine.pool
    event.listen(pool, "connect", lambda *_args: connects.append(_args))
    with pytest.raises(InvalidRequest):
        await store.get("alice\ud800", record.id, now=NOW)
    assert await store.get(OWNER, record.id, now=NOW) == record
    assert connects == []


async def test_a_read_cancelled_while_the_database_holds_it_leaves_the_pool_sound(
    store: SQLMetadataStore,
) -> None:
    record = await created(store)
    table = store.tables.files.name
    locker = create_async_engine(store.engine.url)
    try:
        async with locker.connect() as connection:
            if store.engine.dialect.name == "postgresql":
                await connection.exec_driver_sql(f"LOCK TABLE {table} IN ACCESS EXCLUSIVE MODE")
            else:
                await connection.exec_driver_sql(f"LOCK TABLES {table} WRITE")
            with anyio.move_on_after(0.5) as scope:
                await store.get(OWNER, record.id, now=NOW)
            assert scope.cancelled_caught  # the read waited for the lock until cancelled
            if store.engine.dialect.name != "postgresql":
                await connection.exec_driver_sql("UNLOCK TABLES")
            await connection.rollback()
    finally:
        await locker.dispose()
    assert await store.get(OWNER, record.id, now=NOW) == record
    assert checked_out(store.engine) == 0


@pytest.mark.parametrize("server", SERVERS)
async def test_reads_wait_their_turn_for_a_host_engines_one_connection(server: str) -> None:
    engine = create_async_engine(require_database(server), pool_size=1, max_overflow=0)
    store = SQLMetadataStore(engine, table_prefix=unique_prefix())
    try:
        records = [await created(store, index) for index in range(5)]
        found: list[FileRecord | None] = [None] * 40

        async def read(slot: int) -> None:
            found[slot] = await store.get(OWNER, records[slot % 5].id, now=NOW)

        async with anyio.create_task_group() as group:
            for slot in range(40):
                group.start_soon(read, slot)
        assert found == [records[slot % 5] for slot in range(40)]
        assert checked_out(engine) == 0
    finally:
        await store.drop_schema()
        await store.aclose()
        await engine.dispose()


@pytest.mark.parametrize("server", SERVERS)
async def test_an_engine_that_echoes_reads_through_sqlalchemy_so_each_read_is_logged(
    server: str,
) -> None:
    engine = create_async_engine(require_database(server), echo=True)
    store = SQLMetadataStore(engine, table_prefix=unique_prefix())
    try:
        record = await created(store)
        with watched(engine) as seen:
            assert await store.get(OWNER, record.id, now=NOW) == record
        assert len(seen["executed"]) == 1
    finally:
        await store.drop_schema()
        await store.aclose()
        await engine.dispose()


@pytest.mark.parametrize("server", SERVERS)
@pytest.mark.parametrize("pool", [{"pool_pre_ping": True}, {"pool_recycle": 3600}])
async def test_a_pool_that_pings_or_recycles_still_serves_direct_reads(
    server: str, pool: dict[str, Any]
) -> None:
    engine = create_async_engine(require_database(server), **pool)
    store = SQLMetadataStore(engine, table_prefix=unique_prefix())
    try:
        record = await created(store)
        with watched(engine) as seen:
            for _ in range(3):
                assert await store.get(OWNER, record.id, now=NOW) == record
        assert seen["executed"] == []
        assert checked_out(engine) == 0
    finally:
        await store.drop_schema()
        await store.aclose()
        await engine.dispose()


async def test_reads_after_the_database_dropped_every_pooled_connection_reconnect_quietly(
    store: SQLMetadataStore, recwarn: pytest.WarningsRecorder
) -> None:
    """Each of the pool's connections found dead (or left stale by the pool's invalidation)
    is replaced in a greenlet: no read fails, and no connection attempt is cut short."""
    records = [await created(store, index) for index in range(3)]
    own_id = {"postgresql": "SELECT pg_backend_pid()", "mysql": "SELECT CONNECTION_ID()"}
    kill = {"postgresql": "SELECT pg_terminate_backend({})", "mysql": "KILL {}"}
    dialect = store.engine.dialect.name
    ids: set[int] = set()

    async def note_id() -> None:
        async with store.engine.connect() as connection:
            ids.add(int((await connection.exec_driver_sql(own_id[dialect])).scalar_one()))
            await anyio.sleep(0.1)  # held, so the three take three connections

    async with anyio.create_task_group() as group:
        for _ in range(3):
            group.start_soon(note_id)
    killer = create_async_engine(store.engine.url)
    try:
        async with killer.connect() as connection:
            for backend in ids:
                await connection.exec_driver_sql(kill[dialect].format(backend))
    finally:
        await killer.dispose()
    await anyio.sleep(0.2)
    for _ in range(2):
        for record in records:
            assert await store.get(OWNER, record.id, now=NOW) == record
    assert checked_out(store.engine) == 0
    assert [str(warning.message) for warning in recwarn.list] == []


async def test_a_read_after_a_soft_invalidation_reconnects_quietly(
    store: SQLMetadataStore, recwarn: pytest.WarningsRecorder
) -> None:
    record = await created(store)
    async with store.engine.connect() as connection:
        (await connection.get_raw_connection()).invalidate(soft=True)
    assert await store.get(OWNER, record.id, now=NOW) == record
    assert await store.get(OWNER, record.id, now=NOW) == record
    assert [str(warning.message) for warning in recwarn.list] == []


async def test_bursts_of_reads_beyond_the_pool_wait_for_its_connections_instead_of_opening_more(
    store: SQLMetadataStore,
) -> None:
    """A store's own engine keeps every connection it opens (`SERVER_POOL`): a second burst of
    reads, each held by the database, opens none."""
    record = await created(store)
    connects: list[object] = []
    event.listen(store.engine.sync_engine.pool, "connect", lambda *args: connects.append(args))
    table = store.tables.files.name
    locker = create_async_engine(store.engine.url)

    async def burst() -> None:
        async with locker.connect() as connection:
            if store.engine.dialect.name == "postgresql":
                await connection.exec_driver_sql(f"LOCK TABLE {table} IN ACCESS EXCLUSIVE MODE")
            else:
                await connection.exec_driver_sql(f"LOCK TABLES {table} WRITE")
            found: list[FileRecord | None] = []
            async with anyio.create_task_group() as group:
                for _ in range(SERVER_POOL["pool_size"] + 5):
                    group.start_soon(lambda: read(found))
                await anyio.sleep(0.5)  # every read is in the database or waits for the pool
                if store.engine.dialect.name != "postgresql":
                    await connection.exec_driver_sql("UNLOCK TABLES")
                await connection.rollback()
            assert found == [record] * (SERVER_POOL["pool_size"] + 5)

    async def read(found: list[FileRecord | None]) -> None:
        found.append(await store.get(OWNER, record.id, now=NOW))

    try:
        await burst()
        assert len(connects) <= SERVER_POOL["pool_size"]
        opened = len(connects)
        await burst()
        assert len(connects) == opened
    finally:
        await locker.dispose()


@pytest.mark.parametrize("server", SERVERS)
async def test_a_store_given_a_pool_class_of_its_own_reads_through_it(server: str) -> None:
    """No pool at all (NullPool, as behind pgbouncer): each read connects in its greenlet."""
    store = SQLMetadataStore(
        require_database(server),
        table_prefix=unique_prefix(),
        engine_options={"poolclass": NullPool},
    )
    try:
        record = await created(store)
        for _ in range(3):
            assert await store.get(OWNER, record.id, now=NOW) == record
        assert await store.list(OWNER, now=NOW, limit=5) == [record]
    finally:
        await store.drop_schema()
        await store.aclose()
