"""The SQL store's hottest reads (and, on PostgreSQL, one write), sent straight to the driver
on PostgreSQL (``asyncpg``) and MariaDB/MySQL (``aiomysql``).

A read through SQLAlchemy's async engine (``_sql_runners``) costs several times what the
statement costs the driver: the checkout, the body and the return of the connection each run
in a greenlet of their own, and the statement goes through SQLAlchemy's execution context and
result rows. `DirectReads` keeps what matters of that and skips the rest:

- the SQL is what SQLAlchemy compiles from the store's Core statements (``_sql_statements``),
  compiled once per statement, so the tables' names and prefix, the dialect's casts and
  MariaDB's ``FORCE INDEX`` stay where they are written;
- the connection is taken from and returned to the engine's own pool (the host's pool, for an
  `AsyncEngine` it passes), with the pool's checkout, reset and invalidation rules. On
  asyncpg (and aiomysql in autocommit mode), while a connection waits in the pool and handing
  it over needs no I/O (no ping, no recycling, no listeners at checkout, reset or checkin, no
  reconnect due after an invalidation), that takes no greenlet at all; otherwise the read runs
  in one greenlet, where the pool may connect, wait or close as it needs (SQLAlchemy's own
  path takes five);
- the statement runs on the pooled connection's driver connection (asyncpg's statement cache
  prepares it once per connection), outside any transaction on PostgreSQL, and on MariaDB and
  MySQL where the store opened the connections in autocommit mode (``_mysql_autocommit``);
- the engine's ``before_cursor_execute`` and ``after_cursor_execute`` listeners are called
  with the statement and its positional parameters, as SQLAlchemy calls them (with a
  `Connection` over the pooled connection, no cursor and no execution context), so
  instrumentation on the store's ``statement_engines`` sees every statement sent.

One statement that writes goes the same way on PostgreSQL (`DirectReads.rows` with
``writes``): a file's insert without an idempotency key, one statement that the server commits
on its own. It differs from a read only in failure: it is given back to the caller to run
through SQLAlchemy only when it surely changed nothing (refused by the database or the driver
on a connection still fit, or not sent: the connection was known closed); when the connection
failed under it, it raises `BackendUnavailable`, as a transaction's write does.

A statement that needs SQLAlchemy's processing of values (bind or result processors, expanding
parameters) is not taken, nor is any read while the engine echoes its statements or translates
schema names. A read that fails in the driver returns None after letting go of the connection
if the failure may have broken it: the caller runs it again through SQLAlchemy, which reports
the failure as it always does (and reconnects after a restart of the database, `_sql_runners`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

from sqlalchemy import Connection, Select, event
from sqlalchemy.engine.interfaces import Dialect
from sqlalchemy.exc import MissingGreenlet
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.pool import AsyncAdaptedQueuePool, Pool, PoolProxiedConnection
from sqlalchemy.util import await_, greenlet_spawn

from ..errors import BackendUnavailable
from ._mysql_autocommit import autocommits
from ._sql_prepared import Compiled

__all__ = ["DirectReads", "plain_statement"]

Rows = Sequence[Sequence[Any]]


def plain_statement(query: Select[Any], dialect: Dialect) -> Compiled | None:
    """``query`` compiled for ``dialect``, or None if its values need SQLAlchemy's processing
    on the way in or out, or its parameters are not positional or expand."""
    try:
        compiled = Compiled(query, dialect)
    except ValueError:
        return None
    return compiled if compiled.plain else None


class _Driver(Protocol):
    async def fetch(self, connection: Any, sql: str, arguments: Sequence[Any]) -> Rows:
        """The rows of ``sql`` run on the driver's ``connection``."""
        ...

    def usable_after(self, error: Exception, connection: Any) -> bool:
        """True if ``connection`` is fit for the next statement after ``error``."""
        ...

    def closed(self, connection: Any) -> bool:
        """True if the driver knows ``connection`` to be closed (nothing can be sent on it)."""
        ...

    @property
    def quiet_reset(self) -> bool:
        """True if the pool's reset of a connection that ran only these reads sends nothing."""
        ...


class _Asyncpg:
    """asyncpg outside a transaction: the statement alone, committed by the server (and no
    transaction for the pool's reset to roll back)."""

    quiet_reset = True

    def __init__(self) -> None:
        import asyncpg

        # The server refused the statement, or a value could not be encoded before it was
        # sent: either way the connection is where it was.
        self._harmless = (asyncpg.PostgresError, asyncpg.DataError, UnicodeError)

    async def fetch(self, connection: Any, sql: str, arguments: Sequence[Any]) -> Rows:
        rows: Rows = await connection.fetch(sql, *arguments)
        return rows

    def usable_after(self, error: Exception, connection: Any) -> bool:
        return isinstance(error, self._harmless) and not connection.is_closed()

    def closed(self, connection: Any) -> bool:
        return bool(connection.is_closed())


class _Aiomysql:
    """aiomysql in autocommit mode, as the store opens its own engine's connections
    (``_mysql_autocommit``): the statement alone, committed by the server, and nothing for
    the pool's reset to send. Otherwise (a host's engine, as SQLAlchemy leaves it), the pool's
    reset on return ends the transaction the statement began, with a ROLLBACK sent in a
    greenlet."""

    def __init__(self, quiet_reset: bool = False) -> None:
        from pymysql import err

        self.quiet_reset = quiet_reset

        # Errors the server reported about the statement, or a value that could not be
        # encoded; an OperationalError may be a lost connection.
        self._harmless = (
            err.ProgrammingError,
            err.DataError,
            err.IntegrityError,
            err.NotSupportedError,
            UnicodeError,
        )

    async def fetch(self, connection: Any, sql: str, arguments: Sequence[Any]) -> Rows:
        cursor = await connection.cursor()
        try:
            await cursor.execute(sql, arguments)
            rows: Rows = await cursor.fetchall()
        finally:
            await cursor.close()
        return rows

    def usable_after(self, error: Exception, connection: Any) -> bool:
        return isinstance(error, self._harmless) and not connection.closed

    def closed(self, connection: Any) -> bool:
        return bool(connection.closed)


_DRIVERS: dict[str, Callable[[AsyncEngine], _Driver]] = {
    "asyncpg": lambda _engine: _Asyncpg(),
    "aiomysql": lambda engine: _Aiomysql(quiet_reset=autocommits(engine)),
}


class DirectReads:
    """Read statements of one engine run on its pooled connections' drivers."""

    def __init__(self, engine: AsyncEngine, driver: _Driver) -> None:
        self._engine = engine.sync_engine
        self._dialect = engine.dialect
        self._driver = driver
        self._compiled: dict[Select[Any], Compiled | None] = {}
        self._pool: Pool | None = None
        self._queue: AsyncAdaptedQueuePool | None = None
        self._listener = self._invalidated
        self._in_greenlet = 0  # checkouts left to make in a greenlet (`_invalidated`)
        self._idle_queue()  # listening to the pool from the start

    @classmethod
    def of(cls, engine: AsyncEngine) -> DirectReads | None:
        """Direct reads on ``engine``, or None if its driver has none (SQLite, other drivers)
        or it translates schema names (the statements name the tables as written)."""
        driver = _DRIVERS.get(engine.dialect.driver)
        if driver is None or engine.get_execution_options().get("schema_translate_map"):
            return None
        return cls(engine, driver(engine))

    async def rows(
        self, query: Select[Any], parameters: Mapping[str, Any], *, writes: bool = False
    ) -> Rows | None:
        """The rows of ``query`` (a statement built once: each is compiled on first use and
        kept) with ``parameters``, each as its values in the order of the query's columns; or
        None if this read is not taken or failed in the driver: run it through SQLAlchemy.

        A statement that ``writes`` (PostgreSQL only: one statement, committed by the server
        on its own) gives None only when it changed nothing: not taken, or refused by the
        database or the driver with the connection still fit, which leaves no doubt that it
        was rolled back. When the connection failed under it, whether it was committed is
        unknown: `BackendUnavailable`, and the caller must not run it again."""
        if writes and not self._driver.quiet_reset:
            return None  # outside a transaction only where the driver autocommits
        if self._engine.echo:
            return None  # echo logs every statement; SQLAlchemy's path does the logging
        try:
            statement = self._compiled[query]
        except KeyError:
            statement = self._compiled[query] = plain_statement(query, self._dialect)
        if statement is None:
            return None
        arguments = statement.arguments(parameters)
        queue = self._idle_queue()
        pooled = None
        if queue is not None and self._in_greenlet == 0:
            pooled = _take_at_once(queue)
        elif self._in_greenlet:
            self._in_greenlet -= 1
        if queue is None or pooled is None:
            return await greenlet_spawn(self._run, statement.sql, arguments, writes)
        try:
            return await self._on(pooled, statement.sql, arguments, writes)
        finally:
            if _gives_back_at_once(queue):
                pooled.close()
            else:
                await greenlet_spawn(pooled.close)

    def _run(self, sql: str, arguments: tuple[Any, ...], writes: bool) -> Rows | None:
        """In a greenlet: check a connection out, run the statement, check it back in."""
        try:
            pooled = self._engine.pool.connect()
        except self._dialect.loaded_dbapi.Error:
            return None  # SQLAlchemy's path connects again and reports it
        try:
            return await_(self._on(pooled, sql, arguments, writes))
        finally:
            pooled.close()

    async def _on(
        self, pooled: PoolProxiedConnection, sql: str, arguments: tuple[Any, ...], writes: bool
    ) -> Rows | None:
        """The rows of ``sql`` on ``pooled``'s driver, between the engine's cursor events; None
        if the driver failed (``pooled`` invalidated if that may have broken it; for a
        statement that ``writes``, `BackendUnavailable` then instead)."""
        driver_connection = pooled.driver_connection
        if writes and self._driver.closed(driver_connection):
            pooled.invalidate()  # found dead (the database restarted): nothing is sent
            return None
        dispatch = self._engine.dispatch
        connection: Connection | None = None
        if dispatch.before_cursor_execute or dispatch.after_cursor_execute:
            connection = Connection(self._engine, pooled)
            for before in connection.dispatch.before_cursor_execute:
                sql, arguments = before(connection, None, sql, arguments, None, False)
        try:
            rows = await self._driver.fetch(driver_connection, sql, arguments)
        except Exception as error:
            if not self._driver.usable_after(error, driver_connection):
                pooled.invalidate(error)
                if writes:
                    raise BackendUnavailable(
                        f"The metadata database failed: {type(error).__name__}. Retry the request."
                    ) from error
            return None
        except BaseException:
            # Cancelled while the statement was out: what the connection holds is unknown.
            pooled.invalidate()
            raise
        if connection is not None:
            for after in connection.dispatch.after_cursor_execute:
                after(connection, None, sql, arguments, None, False)
        return rows

    def _idle_queue(self) -> AsyncAdaptedQueuePool | None:
        """The engine's pool, if a connection can be taken from it and given back without a
        greenlet when no I/O is due: SQLAlchemy's own asyncio queue pool with no ping before a
        checkout and no recycling by age, on a driver whose reset on return sends nothing."""
        pool = self._engine.pool
        if pool is not self._pool:  # a new engine, or the pool recreated by dispose()
            self.close()
            quiet = (
                self._driver.quiet_reset
                and type(pool) is AsyncAdaptedQueuePool
                and getattr(pool, "_pre_ping", True) is False
                and getattr(pool, "_recycle", 0) < 0
            )
            self._pool = pool
            self._queue = pool if quiet and isinstance(pool, AsyncAdaptedQueuePool) else None
            if self._queue is not None:
                for name in _INVALIDATIONS:
                    event.listen(self._queue, name, self._listener)
        return self._queue

    def _invalidated(self, *_args: Any) -> None:
        """A connection of the pool was invalidated, maybe with the whole pool: until as many
        checkouts as the pool has connections have gone through a greenlet, the connection
        taken may need a new one to the database (I/O, which a checkout outside a greenlet
        cannot do)."""
        if self._queue is not None:
            self._in_greenlet = self._queue.checkedin() + self._queue.checkedout() + 1

    def close(self) -> None:
        """Stop listening to the pool (the host's, for an engine it passed)."""
        if self._queue is not None:
            for name in _INVALIDATIONS:
                event.remove(self._queue, name, self._listener)
        self._pool = self._queue = None


_INVALIDATIONS = ("invalidate", "soft_invalidate")
"""The pool's events after which a pooled connection may need a new one to the database."""


def _take_at_once(queue: AsyncAdaptedQueuePool) -> PoolProxiedConnection | None:
    """A connection from ``queue`` if one is waiting there and taking it needs no I/O; None if
    there is none or a listener is called at checkout. Should the one taken need a new
    connection to the database all the same (an invalidation `DirectReads` was not told of),
    SQLAlchemy refuses the I/O outside a greenlet, puts it back unconnected, and the read
    checks out in a greenlet."""
    if queue.checkedin() == 0 or queue.dispatch.checkout:
        return None
    try:
        return queue.connect()
    except MissingGreenlet:
        return None


def _gives_back_at_once(queue: AsyncAdaptedQueuePool) -> bool:
    """True if a connection goes back to ``queue`` with no I/O: no listener at reset or
    checkin, and room in the pool so the connection is not closed."""
    return not (queue.dispatch.reset or queue.dispatch.checkin) and (
        queue.checkedin() < queue.size()
    )
