"""How the SQLite store runs its work: in threads that keep their connection (reads side by side,
writes on one thread), the hottest reads on the driver directly with SQLAlchemy's statement
compiled once. What must hold: a slow read or write does not hold up the other reads, a
cancelled write has ended before its caller goes on, a failed read leaves its thread able to
answer the next, the driver's errors are the library's, and closing the store ends every thread.
"""

from __future__ import annotations

import datetime
import gc
import sqlite3
import threading
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import Any

import anyio
import pytest
from sqlalchemy import (
    Column,
    DateTime,
    Integer,
    MetaData,
    Table,
    bindparam,
    create_engine,
    event,
    select,
)

from openai_files import SQLMetadataStore
from openai_files.errors import BackendUnavailable
from openai_files.metadata._sql_prepared import Prepared

from .sql_records import NOW, OWNER, created, pending

pytestmark = pytest.mark.anyio


@pytest.fixture
async def store(sqlite_url: str) -> AsyncIterator[SQLMetadataStore]:
    sqlite = SQLMetadataStore(sqlite_url)
    yield sqlite
    await sqlite.aclose()


@contextmanager
def held_at(store: SQLMetadataStore, matches: str) -> Iterator[threading.Event]:
    """Statements whose SQL or parameters hold ``matches`` wait, in their thread, until the
    event yielded is set (set on leaving, whatever happened)."""
    release = threading.Event()

    def hold(_c: Any, _cursor: Any, statement: str, parameters: Any, *_rest: Any) -> None:
        if matches in statement or matches in repr(parameters):
            assert release.wait(10), "never released"

    engines = store.statement_engines
    for engine in engines:
        event.listen(engine, "before_cursor_execute", hold)
    try:
        yield release
    finally:
        release.set()
        for engine in engines:
            event.remove(engine, "before_cursor_execute", hold)


async def test_a_slow_read_does_not_hold_up_the_other_reads(store: SQLMetadataStore) -> None:
    slow, quick = await created(store, 0, quota=None), await created(store, 1, quota=None)
    with held_at(store, slow.id) as release:
        async with anyio.create_task_group() as group:
            group.start_soon(partial(store.get, OWNER, slow.id, now=NOW))
            with anyio.fail_after(5):
                assert await store.get(OWNER, quick.id, now=NOW) == quick
                assert [r.id for r in await store.list(OWNER, now=NOW, limit=5)] == [
                    quick.id,
                    slow.id,
                ]
            release.set()


async def test_reads_are_answered_while_a_write_is_under_way(store: SQLMetadataStore) -> None:
    kept = await created(store, 0, quota=None)
    writing = pending(1)
    with held_at(store, writing.id) as release:
        async with anyio.create_task_group() as group:
            group.start_soon(store.insert, writing)
            await anyio.sleep(0.05)  # the insert holds the write lock, waiting in its thread
            with anyio.fail_after(5):
                assert await store.get(OWNER, kept.id, now=NOW) == kept
                assert await store.count(OWNER, now=NOW) == 1
            release.set()
    assert await store.get(OWNER, writing.id, now=NOW, include_deleted=True) is None  # pending


async def test_a_cancelled_write_has_ended_before_its_caller_goes_on(
    store: SQLMetadataStore,
) -> None:
    """The service relies on it: an upload cancelled while its record commits must not remove
    the blob of a record that commits afterwards."""
    await created(store, 0, quota=None)
    waiting = pending(1)
    await store.insert(waiting)
    committed = threading.Event()

    def commit(_connection: Any) -> None:
        committed.set()

    for engine in store.statement_engines:
        event.listen(engine, "commit", commit)
    with held_at(store, "UPDATE") as release:
        with anyio.move_on_after(0.1) as scope:
            threading.Timer(0.5, release.set).start()
            await store.commit(waiting.replace(status="processed"))
    assert scope.cancel_called
    assert committed.is_set(), "the caller went on while the write was still running"
    found = await store.get(OWNER, waiting.id, now=NOW)
    assert found is not None
    assert found.state == "active"


async def test_a_cancelled_read_leaves_the_threads_answering(store: SQLMetadataStore) -> None:
    kept = await created(store, quota=None)
    with held_at(store, kept.id) as release:
        with anyio.move_on_after(0.05):
            await store.get(OWNER, kept.id, now=NOW)
    release.set()
    for _ in range(10):
        assert await store.get(OWNER, kept.id, now=NOW) == kept


async def test_a_failed_read_is_the_librarys_error_and_the_next_read_is_answered(
    store: SQLMetadataStore, tmp_path: Path
) -> None:
    kept = await created(store, quota=None)
    files = store.tables.files.name
    database = sqlite3.connect(tmp_path / "files.db")
    database.execute(f"ALTER TABLE {files} RENAME TO moved")
    database.commit()
    with pytest.raises(BackendUnavailable):
        await store.get(OWNER, kept.id, now=NOW)
    with pytest.raises(BackendUnavailable):
        await store.list(OWNER, now=NOW, limit=5)
    database.execute(f"ALTER TABLE moved RENAME TO {files}")
    database.commit()
    database.close()
    assert await store.get(OWNER, kept.id, now=NOW) == kept


async def test_closing_the_store_ends_its_threads_and_closes_their_connections(
    sqlite_url: str, tmp_path: Path
) -> None:
    earlier = set(threading.enumerate())
    store = SQLMetadataStore(sqlite_url)
    kept = await created(store, quota=None)
    assert await store.get(OWNER, kept.id, now=NOW) == kept
    mine = started_since(earlier)
    assert len(mine) == 5  # 4 readers, 1 writer
    await store.aclose()
    assert not any(thread.is_alive() for thread in mine)
    # The last connection closed checkpoints the write-ahead log and removes it.
    assert not (tmp_path / "files.db-wal").exists()


async def test_a_store_dropped_without_closing_ends_its_threads(sqlite_url: str) -> None:
    earlier = set(threading.enumerate())
    store = SQLMetadataStore(sqlite_url)
    kept = await created(store, quota=None)
    assert await store.get(OWNER, kept.id, now=NOW) == kept
    mine = started_since(earlier)
    assert len(mine) == 5
    await store.engine.dispose()  # the async engine's connection (tables made ready) alone
    del store
    gc.collect()
    for thread in mine:
        thread.join(5)
    assert not any(thread.is_alive() for thread in mine)


def started_since(earlier: set[threading.Thread]) -> list[threading.Thread]:
    """The store threads started since ``earlier`` was taken."""
    return [
        thread
        for thread in threading.enumerate()
        if thread not in earlier and thread.name.startswith("openai-files-sqlite")
    ]


def test_a_prepared_statement_applies_the_types_processors(tmp_path: Path) -> None:
    """SQLite stores a DateTime as text: its bind and result processors convert both ways."""
    engine = create_engine(f"sqlite:///{tmp_path / 'typed.db'}")
    metadata = MetaData()
    table = Table(
        "typed", metadata, Column("id", Integer, primary_key=True), Column("at", DateTime)
    )
    metadata.create_all(engine)
    moment = datetime.datetime(2024, 5, 6, 7, 8, 9)
    with engine.begin() as connection:
        connection.execute(table.insert(), [{"id": 1, "at": moment}, {"id": 2, "at": None}])
    query = select(table.c.id, table.c.at).where(table.c.at == bindparam("at")).order_by(table.c.id)
    prepared = Prepared(query, engine.dialect)
    with engine.connect() as connection:
        assert prepared.rows(connection, {"at": moment}) == [(1, moment)]
    engine.dispose()


def test_a_statement_with_an_expanding_parameter_is_refused_when_prepared() -> None:
    engine = create_engine("sqlite://")
    table = Table("t", MetaData(), Column("id", Integer, primary_key=True))
    with pytest.raises(ValueError, match="expanding"):
        Prepared(select(table.c.id).where(table.c.id.in_([1, 2])), engine.dialect)
