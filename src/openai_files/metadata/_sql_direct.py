"""The SQL store's hottest reads, sent straight to the driver on PostgreSQL (``asyncpg``) and
MariaDB/MySQL (``aiomysql``).

A read through SQLAlchemy's async engine (``_sql_runners``) costs several times what the
statement costs the driver: the checkout, the body and the return of the connection each run
in a greenlet of their own, and the statement goes through SQLAlchemy's execution context and
result rows. `DirectReads` keeps what matters of that and skips the rest:

- the SQL is what SQLAlchemy compiles from the store's Core statements (``_sql_statements``),
  compiled once per statement, so the tables' names and prefix, the dialect's casts and
  MariaDB's ``FORCE INDEX`` stay where they are written;
- the connection is taken from and returned to the engine's own pool (the host's pool, for an
  `AsyncEngine` it passes), with the pool's checkout, reset and invalidation rules, in one
  greenlet per read;
- the statement runs on the pooled connection's driver connection (asyncpg's statement cache
  prepares it once per connection), outside any transaction on PostgreSQL;
- the engine's ``before_cursor_execute`` and ``after_cursor_execute`` listeners are called
  with the statement and its positional parameters, as SQLAlchemy calls them (with a
  `Connection` over the pooled connection, no cursor and no execution context), so
  instrumentation on the store's ``statement_engines`` sees every statement sent.

A statement that needs SQLAlchemy's processing of values (bind or result processors, expanding
parameters) is not taken, nor is any read while the engine echoes its statements or translates
schema names. A read that fails in the driver returns None after letting go of the connection
if the failure may have broken it: the caller runs it again through SQLAlchemy, which reports
the failure as it always does (and reconnects after a restart of the database, `_sql_runners`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

from sqlalchemy import Connection, Select
from sqlalchemy.engine.interfaces import Dialect
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.pool import PoolProxiedConnection
from sqlalchemy.util import await_, greenlet_spawn

__all__ = ["DirectReads", "DirectStatement"]

Rows = Sequence[Sequence[Any]]


class DirectStatement:
    """A read statement compiled once for one dialect: its SQL, and how the named parameters
    of a call become the driver's positional ones."""

    __slots__ = ("_defaults", "_names", "sql")

    def __init__(self, sql: str, names: Sequence[str], defaults: Mapping[str, Any]) -> None:
        self.sql = sql
        self._names = tuple(names)
        self._defaults = dict(defaults)

    @classmethod
    def compile(cls, query: Select[Any], dialect: Dialect) -> DirectStatement | None:
        """``query`` compiled for ``dialect``, or None if its values need SQLAlchemy's
        processing on the way in or out, or its parameters are not positional."""
        compiled = query.compile(dialect=dialect)
        names = compiled.positiontup
        if names is None:
            return None
        for bind in compiled.binds.values():
            if bind.expanding or bind.literal_execute:
                return None
            if bind.type.dialect_impl(dialect).bind_processor(dialect) is not None:
                return None
        for column in query.selected_columns:
            if column.type.dialect_impl(dialect).result_processor(dialect, None) is not None:
                return None
        return cls(compiled.string, names, compiled.params)

    def arguments(self, parameters: Mapping[str, Any]) -> tuple[Any, ...]:
        """The positional parameters for the named ``parameters`` (the values the statement
        binds itself, such as ``'active'``, filled in), a tuple as SQLAlchemy passes them."""
        given, defaults = parameters, self._defaults
        return tuple(given[name] if name in given else defaults[name] for name in self._names)


class _Driver(Protocol):
    async def fetch(self, connection: Any, sql: str, arguments: Sequence[Any]) -> Rows:
        """The rows of ``sql`` run on the driver's ``connection``."""
        ...

    def usable_after(self, error: Exception, connection: Any) -> bool:
        """True if ``connection`` is fit for the next statement after ``error``."""
        ...


class _Asyncpg:
    """asyncpg outside a transaction: the statement alone, committed by the server."""

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


class _Aiomysql:
    """aiomysql as SQLAlchemy leaves it (not in autocommit mode): the pool's reset on return
    ends the transaction the statement began."""

    def __init__(self) -> None:
        from pymysql import err

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


_DRIVERS: dict[str, Callable[[], _Driver]] = {"asyncpg": _Asyncpg, "aiomysql": _Aiomysql}


class DirectReads:
    """Read statements of one engine run on its pooled connections' drivers."""

    def __init__(self, engine: AsyncEngine, driver: _Driver) -> None:
        self._engine = engine.sync_engine
        self._dialect = engine.dialect
        self._driver = driver
        self._compiled: dict[Select[Any], DirectStatement | None] = {}

    @classmethod
    def of(cls, engine: AsyncEngine) -> DirectReads | None:
        """Direct reads on ``engine``, or None if its driver has none (SQLite, other drivers)
        or it translates schema names (the statements name the tables as written)."""
        driver = _DRIVERS.get(engine.dialect.driver)
        if driver is None or engine.get_execution_options().get("schema_translate_map"):
            return None
        return cls(engine, driver())

    async def rows(self, query: Select[Any], parameters: Mapping[str, Any]) -> Rows | None:
        """The rows of ``query`` (a statement built once: each is compiled on first use and
        kept) with ``parameters``, each as its values in the order of the query's columns; or
        None if this read is not taken or failed in the driver: run it through SQLAlchemy."""
        if self._engine.echo:
            return None  # echo logs every statement; SQLAlchemy's path does the logging
        try:
            statement = self._compiled[query]
        except KeyError:
            statement = self._compiled[query] = DirectStatement.compile(query, self._dialect)
        if statement is None:
            return None
        arguments = statement.arguments(parameters)
        return await greenlet_spawn(self._run, statement.sql, arguments)

    def _run(self, sql: str, arguments: tuple[Any, ...]) -> Rows | None:
        """Check a connection out, run the statement on its driver, check it back in."""
        try:
            pooled = self._engine.pool.connect()
        except self._dialect.loaded_dbapi.Error:
            return None  # SQLAlchemy's path connects again and reports it
        try:
            return self._fetch(pooled, sql, arguments)
        except Exception:
            raise
        except BaseException:
            # Cancelled while the statement was out: what the connection holds is unknown.
            pooled.invalidate()
            raise
        finally:
            pooled.close()

    def _fetch(
        self, pooled: PoolProxiedConnection, sql: str, arguments: tuple[Any, ...]
    ) -> Rows | None:
        engine = self._engine
        dispatch = engine.dispatch
        connection: Connection | None = None
        if dispatch.before_cursor_execute or dispatch.after_cursor_execute:
            connection = Connection(engine, pooled)
            for before in connection.dispatch.before_cursor_execute:
                sql, arguments = before(connection, None, sql, arguments, None, False)
        driver_connection = pooled.driver_connection
        try:
            rows = await_(self._driver.fetch(driver_connection, sql, arguments))
        except Exception as error:
            if not self._driver.usable_after(error, driver_connection):
                pooled.invalidate(error)
            return None
        if connection is not None:
            for after in connection.dispatch.after_cursor_execute:
                after(connection, None, sql, arguments, None, False)
        return rows
