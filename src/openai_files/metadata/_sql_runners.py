"""How the SQL store runs an operation: each operation is one synchronous function over a
SQLAlchemy `Connection` (its "body"), run in one go, either as a read (no explicit transaction:
one statement is atomic on its own) or as a write (one transaction); a read of one statement's
rows may be given as the statement itself (`Runner.rows`), which a runner may run more cheaply.

- `ThreadedSQLite`, for a SQLite file named by URL: SQLAlchemy's synchronous engine over the
  standard ``sqlite3`` module, in threads that each keep one connection (``_sqlite_threads``):
  reads on `SQLITE_READERS` threads side by side, writes on one writer thread, one after
  another, each starting with ``BEGIN IMMEDIATE``, so writers in this process never wait on
  each other in SQLite's busy handler (the busy timeout remains for writers in other
  processes); the writes that queue while the writer is busy are committed together, in
  one transaction, with one flush of the write-ahead log
  (``_sqlite_group_commit``). An operation costs the event loop one hand-off each way.
  `Runner.rows` runs the statement compiled once on the driver's connection directly
  (``_sql_prepared``).
- `AsyncRunner`, for every other database (and for an `AsyncEngine` the host passes): the body
  runs through `AsyncConnection.run_sync`. On PostgreSQL a read runs in autocommit mode, so it
  is one round trip with no ``BEGIN``/``COMMIT`` around it; so does it on MariaDB and MySQL
  where the store made the engine (``_mysql_autocommit``). The hottest reads on asyncpg and
  aiomysql (a file, a list page, a count, an idempotency key) skip it: they go to the driver
  of a pooled connection (``_sql_direct``), and come here only when that path cannot take
  them or the driver failed.

A body that raises `Rollback` has its transaction rolled back and the runner returns the
exception's ``result``. A read that finds its pooled connection dead (the database restarted)
is run once more on a fresh one; a write is not, since it may have taken effect.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from functools import partial
from typing import Any, Protocol, TypeVar

from sqlalchemy import Connection, Engine, Executable, Select, create_engine, event
from sqlalchemy.engine import URL
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from ._mysql_autocommit import AUTOCOMMIT_READ, autocommits
from ._sql_direct import DirectReads
from ._sql_prepared import Prepared, Statement
from ._sqlite_group_commit import GroupCommits, Rollback, end_transaction, in_transaction
from ._sqlite_threads import ConnectionThreads

__all__ = [
    "AsyncRunner",
    "Body",
    "Rollback",
    "Rows",
    "Runner",
    "ThreadedSQLite",
    "threaded_sqlite_url",
]

T = TypeVar("T")
Body = Callable[[Connection], T]
Rows = Sequence[Sequence[Any]]

SQLITE_READERS = 4
"""Reader threads of one SQLite store (each with its connection); writes have one more."""


class Runner(Protocol):
    async def read(self, body: Body[T]) -> T:
        """Run ``body`` without an explicit transaction (its one statement is atomic)."""
        ...

    async def write(self, body: Body[T]) -> T:
        """Run ``body`` in one transaction, committed unless it raises."""
        ...

    async def rows(self, statement: Select[Any], parameters: Mapping[str, Any]) -> Rows:
        """The rows of ``statement`` run as a read with ``parameters`` (by name), each in the
        statement's column order. ``statement`` is one the store keeps (`Statements`): a
        runner may compile it once."""
        ...

    async def aclose(self) -> None:
        """Close the runner's own connections, if it has any."""
        ...


def _dead_connection(exc: BaseException) -> bool:
    return isinstance(exc, DBAPIError) and exc.connection_invalidated


# -- SQLite: the synchronous engine in worker threads ----------------------------------------------


def threaded_sqlite_url(url: URL) -> bool:
    """True for a SQLite database in a file (an in-memory database lives in one connection of
    the async engine, so it stays there)."""
    if url.get_backend_name() != "sqlite":
        return False
    database = url.database or ""
    return database not in ("", ":memory:") and url.query.get("mode") != "memory"


class ThreadedSQLite:
    """Bodies run whole in threads that keep their ``sqlite3`` connection (see the module)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._readers = ConnectionThreads(engine, SQLITE_READERS, "openai-files-sqlite-reader")
        self._writes = GroupCommits(engine, "openai-files-sqlite-writer")
        self._prepared: dict[int, tuple[Statement, Prepared]] = {}

    @classmethod
    def open(
        cls,
        url: URL,
        options: Mapping[str, Any],
        configure: Callable[[Any, Any], None],
    ) -> ThreadedSQLite:
        """The engine for ``url`` with the async engine's ``options``, each connection set up
        by ``configure`` and left in the driver's autocommit mode: transactions are begun
        explicitly, with ``BEGIN IMMEDIATE``."""
        engine = create_engine(url.set(drivername="sqlite+pysqlite"), **options)

        def connected(dbapi_connection: Any, record: Any) -> None:
            configure(dbapi_connection, record)
            dbapi_connection.isolation_level = None

        event.listen(engine, "connect", connected)
        return cls(engine)

    async def read(self, body: Body[T]) -> T:
        return await self._readers.run(partial(_read_alone, body))

    async def write(self, body: Body[T]) -> T:
        # One writer thread: a write begins only once the one before it has ended, and the
        # writes that queued meanwhile are committed together (`GroupCommits`).
        return await self._writes.write(body)

    async def rows(self, statement: Select[Any], parameters: Mapping[str, Any]) -> Rows:
        prepared = self.prepared(statement)
        return await self._readers.run(partial(prepared.rows, parameters=parameters))

    def prepared(self, statement: Statement) -> Prepared:
        """``statement`` (one the store keeps, `Statements`) compiled once, to run on the
        driver (``_sql_prepared``); from any thread."""
        kept = self._prepared.get(id(statement))
        if kept is None:
            # The statement is kept with its compiled form, so its id is not reused.
            kept = (statement, Prepared(statement, self.engine.dialect))
            self._prepared[id(statement)] = kept
        return kept[1]

    async def aclose(self) -> None:
        await self._readers.aclose()
        await self._writes.aclose()
        self.engine.dispose()


def _read_alone(body: Body[T], connection: Connection) -> T:
    """``body`` on a connection kept by its thread, which it leaves with no transaction."""
    try:
        return body(connection)
    finally:
        end_transaction(connection)


# -- every other database: the async engine --------------------------------------------------------


class AsyncRunner:
    """Bodies run through `AsyncConnection.run_sync` on the async engine."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        # asyncpg switches a connection to autocommit without a round trip; other drivers
        # would pay one each way, more than the COMMIT they save, unless their connections
        # are in autocommit mode already (``_mysql_autocommit``).
        self._autocommit_reads = engine.dialect.name == "postgresql"
        self._marked_reads = autocommits(engine)
        self._direct = DirectReads.of(engine)

    async def read(self, body: Body[T]) -> T:
        try:
            return await self._read(body)
        except DBAPIError as exc:
            if not _dead_connection(exc):
                raise
        return await self._read(body)  # the pool has let go of the dead connections

    async def write(self, body: Body[T]) -> T:
        async with self.engine.connect() as connection:
            return await connection.run_sync(in_transaction, body)

    async def rows(self, statement: Select[Any], parameters: Mapping[str, Any]) -> Rows:
        """On the driver of a pooled connection (`DirectReads`) where it takes the statement,
        through SQLAlchemy otherwise or when the driver failed (the failure reported as usual)."""
        if self._direct is not None:
            rows = await self._direct.rows(statement, parameters)
            if rows is not None:
                return rows
        return await self.read(lambda connection: connection.execute(statement, parameters).all())

    async def written(self, statement: Select[Any], parameters: Mapping[str, Any]) -> Rows | None:
        """The rows of one statement that writes, committed on its own, on the driver of a
        pooled connection (`DirectReads.rows` with ``writes``); None if it changed nothing:
        the driver does not take it, or the database refused it."""
        if self._direct is None:
            return None
        return await self._direct.rows(statement, parameters, writes=True)

    async def changed(self, statement: Executable, parameters: Mapping[str, Any]) -> int | None:
        """The rows one statement that writes changed, run as a read is, outside a transaction,
        so the database commits it on its own (PostgreSQL; MariaDB and MySQL in autocommit
        mode): no ``BEGIN`` and no ``COMMIT`` around it. None where reads run in a
        transaction: the caller writes in one instead. Not run again on a dead connection."""
        if not (self._autocommit_reads or self._marked_reads):
            return None
        return await self._read(
            lambda connection: connection.execute(statement, parameters).rowcount
        )

    async def aclose(self) -> None:
        if self._direct is not None:
            self._direct.close()

    async def _read(self, body: Body[T]) -> T:
        async with self.engine.connect() as connection:
            if self._autocommit_reads:
                connection = await _autocommit(connection)
            elif self._marked_reads:
                connection = await connection.execution_options(**{AUTOCOMMIT_READ: True})
            return await connection.run_sync(body)


async def _autocommit(connection: AsyncConnection) -> AsyncConnection:
    return await connection.execution_options(isolation_level="AUTOCOMMIT")
