"""Group commit on the SQLite store: the writes that queue while the writer thread is busy are
committed together, in one transaction (with a savepoint per write only once one refuses).
What must hold: every write of a
group is committed and answered, a refused write (quota, conflict, key taken) and a failing
one do not fail the others, a quota and an idempotency key decide as they do one write at a
time, and a caller is answered only once its group has committed."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from functools import partial
from pathlib import Path
from typing import Any

import anyio
import pytest
from sqlalchemy import Connection, create_engine, event, text
from sqlalchemy.dialects import sqlite

from openai_files import SQLMetadataStore
from openai_files.errors import Conflict, QuotaExceeded
from openai_files.metadata import _sqlite_group_commit as group_commit
from openai_files.metadata._sql_prepared import Compiled
from openai_files.metadata._sql_statements import Statements
from openai_files.metadata._sqlite_group_commit import GroupCommits, Rollback
from openai_files.metadata.base import Quota
from openai_files.metadata.sql_schema import Tables

from ..databases import counted
from .sql_records import NOW, OWNER, created, pending

pytestmark = pytest.mark.anyio


@pytest.fixture
async def store(sqlite_url: str) -> AsyncIterator[SQLMetadataStore]:
    sqlite = SQLMetadataStore(sqlite_url)
    await created(sqlite, 0, quota=None)  # tables made, the owner's usage row there
    yield sqlite
    await sqlite.aclose()


async def in_one_group(
    store: SQLMetadataStore, writes: list[Callable[[], Awaitable[Any]]]
) -> list[Any]:
    """Run ``writes`` while the writer thread is held in a write of its own, so that they all
    queue behind it and the next turn takes them as one group; each write's result, or the
    exception it raised."""
    release = threading.Event()
    blocker = pending(999)

    def hold(_c: Any, _cursor: Any, statement: str, parameters: Any, *_rest: Any) -> None:
        if blocker.id in repr(parameters):
            assert release.wait(10), "never released"

    outcomes: list[Any] = [None] * len(writes)

    async def run(index: int) -> None:
        try:
            outcomes[index] = await writes[index]()
        except Exception as exc:
            outcomes[index] = exc

    for engine in store.statement_engines:
        event.listen(engine, "before_cursor_execute", hold)
    try:
        async with anyio.create_task_group() as group:
            group.start_soon(store.insert, blocker)
            await anyio.sleep(0.2)  # the writer holds the blocker's write
            for index in range(len(writes)):
                group.start_soon(run, index)
            await anyio.sleep(0.2)  # every write queued
            release.set()
    finally:
        release.set()
        for engine in store.statement_engines:
            event.remove(engine, "before_cursor_execute", hold)
    return outcomes


async def test_writes_queued_together_are_all_committed_in_one_commit(
    store: SQLMetadataStore,
) -> None:
    records = [pending(index).replace(state="active", bytes=10) for index in range(1, 21)]
    with counted(store) as tally:
        ids = await in_one_group(store, [partial(store.insert, record) for record in records])
    assert ids == [record.id for record in records]
    assert tally.commits == 2  # the blocker's, then the group's
    for record in records:
        assert await store.get(OWNER, record.id, now=NOW) == record
    usage = await store.usage(OWNER)
    assert usage.files == 1 + 1 + 20  # the fixture's, the blocker and the group


async def test_a_quota_decides_exactly_within_a_group(store: SQLMetadataStore) -> None:
    quota = Quota(max_files=10)  # 2 files already (the fixture's, then the blocker)
    records = [pending(index).replace(state="active") for index in range(1, 21)]
    outcomes = await in_one_group(
        store, [partial(store.insert, record, quota=quota) for record in records]
    )
    won = [o for o in outcomes if isinstance(o, str)]
    refused = [o for o in outcomes if isinstance(o, QuotaExceeded)]
    assert len(won) == 8
    assert len(refused) == 12
    assert won == [record.id for record in records[:8]]  # in the order they came
    assert (await store.usage(OWNER)).files == 10
    listed = await store.list(OWNER, now=NOW, limit=100)
    assert len(listed) == 9  # the blocker is pending


async def test_a_refused_write_does_not_fail_the_others(store: SQLMetadataStore) -> None:
    existing = pending(1).replace(state="active")
    await store.insert(existing)
    fresh = [pending(index).replace(state="active") for index in range(2, 8)]
    duplicate = existing.replace(filename="again.txt")  # the same id: a conflict
    writes: list[Callable[[], Awaitable[Any]]] = [
        partial(store.insert, record) for record in fresh[:3]
    ]
    writes.append(partial(store.insert, duplicate))
    writes += [partial(store.insert, record) for record in fresh[3:]]
    outcomes = await in_one_group(store, writes)
    assert isinstance(outcomes[3], Conflict)
    assert [o for i, o in enumerate(outcomes) if i != 3] == [record.id for record in fresh]
    for record in fresh:
        assert await store.get(OWNER, record.id, now=NOW) == record
    assert await store.get(OWNER, existing.id, now=NOW) == existing
    # The refused write's usage was undone with its savepoint.
    assert (await store.usage(OWNER)).files == 1 + 1 + 1 + len(fresh)


async def test_an_idempotency_key_names_one_file_within_a_group(
    store: SQLMetadataStore,
) -> None:
    records = [pending(index).replace(state="active") for index in range(1, 11)]
    since = NOW - 86_400
    outcomes = await in_one_group(
        store,
        [partial(store.insert, record, idempotency_key="k", key_since=since) for record in records],
    )
    assert outcomes == [records[0].id] * len(records)
    assert await store.idempotent_file(OWNER, "k", since=since) == records[0].id
    for record in records[1:]:
        assert await store.get(OWNER, record.id, now=NOW) is None
    assert (await store.usage(OWNER)).files == 1 + 1 + 1


async def test_a_cancelled_writer_of_a_group_waits_for_its_commit(
    store: SQLMetadataStore,
) -> None:
    record = pending(1).replace(state="active")

    async def cancelled() -> str:
        with anyio.move_on_after(0.05):
            return await store.insert(record)
        return "cancelled"

    outcomes = await in_one_group(store, [cancelled])
    assert outcomes == ["cancelled"]  # cancelled, once its group had committed
    assert await store.get(OWNER, record.id, now=NOW) == record


async def test_a_plain_task_cancel_of_a_writer_is_not_lost(store: SQLMetadataStore) -> None:
    """``task.cancel()`` (asyncio's own, with no cancel scope to deliver it again) reaches the
    writer once its write has ended: the task ends cancelled, and the write is committed."""
    record = pending(1).replace(state="active")
    tasks: list[asyncio.Task[str]] = []

    async def cancelled() -> str:
        task = asyncio.ensure_future(store.insert(record))
        tasks.append(task)
        await asyncio.sleep(0.05)  # queued behind the blocker
        task.cancel()
        await asyncio.wait((task,), timeout=10)
        return "cancelled" if task.cancelled() else task.result()

    outcomes = await in_one_group(store, [cancelled])
    assert outcomes == ["cancelled"]
    assert tasks[0].cancelled()
    assert await store.get(OWNER, record.id, now=NOW) == record


# -- the mechanism itself, on a plain table ----------------------------------------------------


@pytest.fixture
def writes(tmp_path: Path) -> Iterator[tuple[GroupCommits, Any]]:
    engine = create_engine(f"sqlite:///{tmp_path / 'plain.db'}")

    @event.listens_for(engine, "connect")
    def autocommit(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # as the store's threads leave it

    with engine.begin() as connection:
        connection.exec_driver_sql("CREATE TABLE t (n INTEGER PRIMARY KEY)")
    yield GroupCommits(engine, "openai-files-sqlite-test-writer"), engine
    engine.dispose()


def numbers(engine: Any) -> list[int]:
    with engine.connect() as connection:
        return [row[0] for row in connection.execute(text("SELECT n FROM t ORDER BY n"))]


async def queued_together(
    group: GroupCommits, bodies: list[Callable[[Connection], Any]]
) -> list[Any]:
    """Run ``bodies`` as one group: queued while the writer runs a write that waits."""
    release = threading.Event()
    outcomes: list[Any] = [None] * len(bodies)

    async def run(index: int) -> None:
        try:
            outcomes[index] = await group.write(bodies[index])
        except Exception as exc:
            outcomes[index] = exc

    async with anyio.create_task_group() as tasks:
        tasks.start_soon(group.write, lambda _connection: release.wait(10))
        await anyio.sleep(0.1)
        for index in range(len(bodies)):
            tasks.start_soon(run, index)
        await anyio.sleep(0.2)
        release.set()
    return outcomes


def insert(n: int) -> Callable[[Connection], int]:
    def body(connection: Connection) -> int:
        connection.execute(text("INSERT INTO t (n) VALUES (:n)"), {"n": n})
        return n

    return body


async def test_a_failing_write_is_run_alone_and_the_others_commit(
    writes: tuple[GroupCommits, Any],
) -> None:
    """An error that is not a refusal rolls the group back; each write then runs alone."""
    group, engine = writes
    runs: list[int] = []

    def broken(connection: Connection) -> int:
        runs.append(1)
        connection.execute(text("INSERT INTO t (n) VALUES (100)"))
        raise RuntimeError("broken")

    try:
        outcomes = await queued_together(group, [insert(1), insert(2), broken, insert(3)])
    finally:
        await group.aclose()
    assert outcomes[:2] == [1, 2]
    assert outcomes[3] == 3
    assert isinstance(outcomes[2], RuntimeError)
    assert len(runs) == 2  # in the group, then alone
    assert numbers(engine) == [1, 2, 3]  # the failed write's row undone both times


async def test_a_rollback_in_a_group_undoes_that_write_only(
    writes: tuple[GroupCommits, Any],
) -> None:
    group, engine = writes

    def undone(connection: Connection) -> str:
        connection.execute(text("INSERT INTO t (n) VALUES (50)"))
        raise Rollback("undone")

    try:
        outcomes = await queued_together(group, [insert(1), undone, insert(2)])
    finally:
        await group.aclose()
    assert outcomes == [1, "undone", 2]
    assert numbers(engine) == [1, 2]


async def test_a_group_takes_savepoints_only_once_a_write_refuses(
    writes: tuple[GroupCommits, Any],
) -> None:
    """A savepoint costs two statements a write: a group runs without them, and only when one
    of its writes refuses is it rolled back and run again, each write in a savepoint."""
    group, engine = writes
    statements: list[str] = []
    runs: list[int] = []

    @event.listens_for(engine, "checkout")
    def traced(dbapi_connection: Any, _record: Any, _proxy: Any) -> None:
        dbapi_connection.set_trace_callback(statements.append)

    def refusing(connection: Connection) -> int:
        runs.append(1)
        connection.execute(text("INSERT INTO t (n) VALUES (50)"))
        raise Conflict("taken")

    def savepoints() -> int:
        return sum(statement.startswith("SAVEPOINT") for statement in statements)

    try:
        assert await queued_together(group, [insert(1), insert(2), insert(3)]) == [1, 2, 3]
        assert any(statement.startswith("INSERT") for statement in statements)  # traced
        assert savepoints() == 0
        outcomes = await queued_together(group, [insert(4), refusing, insert(5)])
    finally:
        await group.aclose()
    assert outcomes[0::2] == [4, 5]
    assert isinstance(outcomes[1], Conflict)
    assert len(runs) == 2  # without savepoints, then again with them
    assert savepoints() == 3
    assert numbers(engine) == [1, 2, 3, 4, 5]


async def test_a_failed_commit_runs_each_write_alone(
    writes: tuple[GroupCommits, Any],
) -> None:
    """A group whose commit fails is run again, one write at a time: none of its writes sees
    the group's failure."""
    group, engine = writes
    failures = iter([True])  # the group's first commit fails

    @event.listens_for(engine, "commit")
    def fail_once(connection: Any) -> None:
        rows = connection.connection.dbapi_connection.execute("SELECT count(*) FROM t")
        if rows.fetchone()[0] >= 2 and next(failures, False):
            raise OSError("disk went away")

    try:
        outcomes = await queued_together(group, [insert(1), insert(2), insert(3)])
    finally:
        await group.aclose()
    assert outcomes == [1, 2, 3]
    assert numbers(engine) == [1, 2, 3]


async def test_one_turn_of_the_thread_runs_and_answers_every_group_it_finds(
    writes: tuple[GroupCommits, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A write that finds a turn under way costs no job of its own on the writer thread: the
    turn that is running takes it with the next group, and answers its caller."""
    group, engine = writes
    jobs: list[object] = []
    turns: list[asyncio.Future[None]] = []
    submit = group._thread.submit

    def counted(job: Any) -> Any:
        jobs.append(job)
        turns.append(submit(job))
        return turns[-1]

    monkeypatch.setattr(group._thread, "submit", counted)
    try:
        outcomes = await queued_together(group, [insert(n) for n in range(1, 9)])
        assert outcomes == list(range(1, 9))
        assert len(jobs) == 1  # the blocker's turn, which went on with the eight
        # The turn ends just after it answers; a write that came before would join it.
        with anyio.fail_after(5):
            await turns[0]
        assert await group.write(insert(9)) == 9  # the thread was idle: a turn of its own
        assert len(jobs) == 2
    finally:
        await group.aclose()
    assert numbers(engine) == list(range(1, 10))


async def test_a_turn_that_cannot_connect_fails_its_writes_and_the_next_write_connects(
    tmp_path: Path,
) -> None:
    """The writer thread opens its connection at its first turn. If that fails, every write
    that turn would have run fails with the error (none is left waiting for a turn that will
    not come), and the next write opens a connection again."""
    engine = create_engine(f"sqlite:///{tmp_path / 'plain.db'}")
    with engine.begin() as connection:
        connection.exec_driver_sql("CREATE TABLE t (n INTEGER PRIMARY KEY)")
    refusals = iter([OSError("no connection")])

    @event.listens_for(engine, "do_connect")
    def refuse_once(*_arguments: Any) -> None:
        refusal = next(refusals, None)
        if refusal is not None:
            raise refusal

    engine.dispose()
    group = GroupCommits(engine, "openai-files-sqlite-test-writer")
    try:
        outcomes = await asyncio.gather(
            *(group.write(insert(n)) for n in (1, 2, 3)), return_exceptions=True
        )
        assert [str(outcome) for outcome in outcomes] == ["no connection"] * 3
        assert await group.write(insert(4)) == 4
        assert await group.write(insert(5)) == 5
    finally:
        await group.aclose()
        engine.dispose()
    assert numbers(engine) == [4, 5]


# -- a small file's create sends its writes to the driver directly -----------------------------


def test_an_insert_with_a_default_computed_at_execution_is_not_prepared() -> None:
    """The usage row's INSERT leaves ``open_uploads`` to its column default, which SQLAlchemy
    computes at each execution: compiled once, it would send NULL."""
    statements = Statements(Tables.named("t_"), "sqlite")
    with pytest.raises(ValueError, match="column defaults"):
        Compiled(statements.usage_row(), sqlite.dialect())
    Compiled(statements.insert_file(), sqlite.dialect())  # every value given: taken


async def test_a_prepared_write_reports_its_rows_and_the_drivers_errors(
    store: SQLMetadataStore,
) -> None:
    """The writes of a create run on the driver: a refused quota changes no row, a taken id is
    a conflict, and the statements are seen by the engine's listeners."""
    seen: list[str] = []

    def statement(_c: Any, _cursor: Any, sql: str, *_rest: Any) -> None:
        seen.append(sql)

    for engine in store.statement_engines:
        event.listen(engine, "before_cursor_execute", statement)
    try:
        record = pending(1).replace(state="active")
        assert await store.insert(record, quota=Quota(max_files=100)) == record.id
        with pytest.raises(Conflict):
            await store.insert(record.replace(filename="again.txt"))
        with pytest.raises(QuotaExceeded):
            await store.insert(pending(2).replace(state="active"), quota=Quota(max_files=2))
    finally:
        for engine in store.statement_engines:
            event.remove(engine, "before_cursor_execute", statement)
    assert any(sql.startswith("INSERT INTO") and "_files " in sql for sql in seen)
    assert (await store.usage(OWNER)).files == 2
    assert await store.get(OWNER, record.id, now=NOW) == record


async def test_a_write_alone_while_writes_come_fast_waits_for_the_next_to_share_its_commit(
    store: SQLMetadataStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(group_commit, "COMMIT_DELAY", 0.5)
    monkeypatch.setattr(group_commit, "BUSY_WITHIN", 3600.0)  # every write counts as fast
    first, second, third = (pending(n).replace(state="active") for n in (1, 2, 3))
    with counted(store) as tally:
        await store.insert(first)  # the store's first commit: nothing came before it
        assert tally.commits == 1
        async with anyio.create_task_group() as group:
            group.start_soon(store.insert, second)  # alone, so it waits for company
            await anyio.sleep(0.1)
            group.start_soon(store.insert, third)
    assert tally.commits == 2  # the second and the third shared one commit
    for record in (first, second, third):
        assert await store.get(OWNER, record.id, now=NOW) == record


async def test_a_write_alone_on_a_quiet_store_does_not_wait(
    store: SQLMetadataStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(group_commit, "COMMIT_DELAY", 30.0)
    monkeypatch.setattr(group_commit, "BUSY_WITHIN", 0.0)  # no write counts as fast
    records = [pending(n).replace(state="active") for n in (1, 2)]
    with counted(store) as tally, anyio.fail_after(10):
        for record in records:
            await store.insert(record)
    assert tally.commits == 2
