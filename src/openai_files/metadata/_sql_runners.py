"""How the SQL store runs an operation: each operation is one synchronous function over a
SQLAlchemy `Connection` (its "body"), run in one go, either as a read (no explicit transaction:
one statement is atomic on its own) or as a write (one transaction).

- `ThreadedSQLite`, for a SQLite file named by URL: SQLAlchemy's synchronous engine over the
  standard ``sqlite3`` module, each body run whole in a worker thread (a limiter of its own), so
  an operation costs the event loop one hand-off instead of one per driver call. Writers in this
  process take turns on a lock and start with ``BEGIN IMMEDIATE``, so they never wait on each
  other in SQLite's busy handler; the busy timeout remains for writers in other processes.
- `AsyncRunner`, for every other database (and for an `AsyncEngine` the host passes): the body
  runs through `AsyncConnection.run_sync`. On PostgreSQL a read runs in autocommit mode, so it
  is one round trip with no ``BEGIN``/``COMMIT`` around it. The hottest reads on asyncpg and
  aiomysql (a file, a list page, a count, an idempotency key) skip it: they go to the driver
  of a pooled connection (``_sql_direct``), and come here only when that path cannot take
  them or the driver failed.

A body that raises `Rollback` has its transaction rolled back and the runner returns the
exception's ``result``. A read that finds its pooled connection dead (the database restarted)
is run once more on a fresh one; a write is not, since it may have taken effect.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Generic, Protocol, TypeVar

import anyio
import anyio.to_thread
from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import URL
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

__all__ = ["AsyncRunner", "Body", "Rollback", "Runner", "ThreadedSQLite", "threaded_sqlite_url"]

T = TypeVar("T")
Body = Callable[[Connection], T]

SQLITE_THREADS = 4
"""Worker threads one SQLite store uses at most (reads run side by side; writes take turns)."""


class Rollback(Exception, Generic[T]):
    """Raised by a write's body to undo its transaction quietly; the runner returns
    ``result``."""

    def __init__(self, result: T) -> None:
        super().__init__(result)
        self.result = result


class Runner(Protocol):
    async def read(self, body: Body[T]) -> T:
        """Run ``body`` without an explicit transaction (its one statement is atomic)."""
        ...

    async def write(self, body: Body[T]) -> T:
        """Run ``body`` in one transaction, committed unless it raises."""
        ...

    def dispose(self) -> None:
        """Close the runner's own connections, if it has any."""
        ...


def _in_transaction(connection: Connection, body: Body[T]) -> T:
    try:
        result = body(connection)
    except Rollback as undo:
        connection.rollback()
        return undo.result  # type: ignore[no-any-return]
    except BaseException:
        connection.rollback()
        raise
    connection.commit()
    return result


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
    """Bodies run whole in worker threads on a synchronous ``sqlite3`` engine."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._writer = anyio.Lock()
        self._threads = anyio.CapacityLimiter(SQLITE_THREADS)

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
        return await anyio.to_thread.run_sync(self._read, body, limiter=self._threads)

    async def write(self, body: Body[T]) -> T:
        async with self._writer:
            return await anyio.to_thread.run_sync(self._write, body, limiter=self._threads)

    def dispose(self) -> None:
        self.engine.dispose()

    def _read(self, body: Body[T]) -> T:
        with self.engine.connect() as connection:
            return body(connection)

    def _write(self, body: Body[T]) -> T:
        with self.engine.connect() as connection:
            connection.exec_driver_sql("BEGIN IMMEDIATE")
            return _in_transaction(connection, body)


# -- every other database: the async engine --------------------------------------------------------


class AsyncRunner:
    """Bodies run through `AsyncConnection.run_sync` on the async engine."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        # asyncpg switches a connection to autocommit without a round trip; other drivers
        # would pay one each way, more than the COMMIT they save.
        self._autocommit_reads = engine.dialect.name == "postgresql"

    async def read(self, body: Body[T]) -> T:
        try:
            return await self._read(body)
        except DBAPIError as exc:
            if not _dead_connection(exc):
                raise
        return await self._read(body)  # the pool has let go of the dead connections

    async def write(self, body: Body[T]) -> T:
        async with self.engine.connect() as connection:
            return await connection.run_sync(_in_transaction, body)

    def dispose(self) -> None:
        pass

    async def _read(self, body: Body[T]) -> T:
        async with self.engine.connect() as connection:
            if self._autocommit_reads:
                connection = await _autocommit(connection)
            return await connection.run_sync(body)


async def _autocommit(connection: AsyncConnection) -> AsyncConnection:
    return await connection.execution_options(isolation_level="AUTOCOMMIT")
