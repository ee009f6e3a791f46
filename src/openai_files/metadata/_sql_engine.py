"""The SQL store's engine: the tables made ready on first use, reads and writes run by a
`Runner` (``_sql_runners``) with the database's errors translated into the library's
(``_sql_errors``), and the owners' usage rows, which file records and upload records both
count in. How the engine is made and its connections set up is ``_sql_connect``."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from functools import partial
from typing import Any, TypeVar

import anyio
from sqlalchemy import Connection, Engine, Executable, Insert, Select, Update, insert, select
from sqlalchemy.exc import DBAPIError, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine

from ..errors import BackendUnavailable
from ._sql_connect import SQLITE_SYNCHRONOUS, configure_sqlite, make_engine, sqlite_settings
from ._sql_errors import raise_translated
from ._sql_one_statement import OneStatementWrites
from ._sql_runners import (
    AsyncRunner,
    Body,
    Rollback,
    Rows,
    Runner,
    ThreadedSQLite,
    threaded_sqlite_url,
)
from ._sql_statements import Statements
from .base import DEFAULT_TABLE_PREFIX, Quota, Usage
from .sql_migrations import upgrade
from .sql_schema import SCHEMA_VERSION, Tables

__all__ = ["Rollback", "SQLEngine", "quota_caps", "usage_of"]

T = TypeVar("T")


class SQLEngine:
    """The engine and tables of one `SQLMetadataStore`, and what its file records and upload
    records share: transactions, error translation and the usage rows."""

    def __init__(
        self,
        url_or_engine: str | AsyncEngine,
        *,
        table_prefix: str = DEFAULT_TABLE_PREFIX,
        engine_options: Mapping[str, Any] | None = None,
    ) -> None:
        # The synchronous level goes to the threaded runner's connections too (`_make_runner`).
        self._sqlite_synchronous = SQLITE_SYNCHRONOUS[0]
        if isinstance(url_or_engine, AsyncEngine):
            self.engine, self._owns_engine = url_or_engine, False
        else:
            self.engine, self._sqlite_synchronous = make_engine(url_or_engine, engine_options)
            self._owns_engine = True
        self._runner = self._make_runner(engine_options)
        self.table_prefix = table_prefix
        self.tables = Tables.named(table_prefix)
        self._files = self.tables.files
        self._dialect = self.engine.dialect.name
        self._statements = Statements(self.tables, self._dialect)
        self._one_statement = (
            OneStatementWrites(self.tables, self._statements)
            if self._dialect == "postgresql"
            else None
        )
        self._ready = False
        self._ready_lock = anyio.Lock()

    # -- schema -----------------------------------------------------------------------------

    async def create_schema(self) -> None:
        """Create the tables if they are missing and check the recorded schema version.

        Safe to call from several processes at once; called on first use by every method.
        """
        async with self._ready_lock:
            if self._ready:
                return
            async with self._translate():
                try:
                    await self._create_tables()
                except DBAPIError:
                    # Another process created them between our check and our CREATE.
                    await self._create_tables()
                await self._check_version()
            self._ready = True

    async def _create_tables(self) -> None:
        async with self.engine.begin() as connection:
            await connection.run_sync(self.tables.metadata.create_all, checkfirst=True)

    async def _check_version(self) -> None:
        """Record the version of tables just created, or upgrade older ones in place."""
        version = self.tables.version
        async with self.engine.connect() as connection:
            found = (await connection.execute(select(version.c.version))).scalars().all()
            if not found:
                await connection.execute(insert(version).values(version=SCHEMA_VERSION))
            elif max(found) > SCHEMA_VERSION:
                raise BackendUnavailable(
                    f"The database schema is version {max(found)}, newer than this release "
                    f"understands ({SCHEMA_VERSION}); upgrade openai-files."
                )
            elif max(found) < SCHEMA_VERSION:
                await connection.run_sync(upgrade, self.tables, max(found))
            await connection.commit()

    async def drop_schema(self) -> None:
        """Drop this store's tables (for tests and uninstalls)."""
        async with self._translate(), self.engine.begin() as connection:
            await connection.run_sync(self.tables.metadata.drop_all, checkfirst=True)
        self._ready = False

    async def aclose(self) -> None:
        """Close the runner, and dispose of the engine if the store created it; a host's engine
        is left open."""
        await self._runner.aclose()
        if self._owns_engine:
            await self.engine.dispose()

    @property
    def statement_engines(self) -> tuple[Engine, ...]:
        """The synchronous engines whose events (``before_cursor_execute``, ``commit``, ...)
        see every statement of this store, for instrumentation: the async engine's
        ``sync_engine`` and, for a SQLite file the store opened, the engine its worker threads
        use."""
        runner = self._runner
        threaded = (runner.engine,) if isinstance(runner, ThreadedSQLite) else ()
        return (*threaded, self.engine.sync_engine)

    # -- running operations -------------------------------------------------------------------

    def _make_runner(self, engine_options: Mapping[str, Any] | None) -> Runner:
        """Worker threads on a synchronous engine for a SQLite file the store opened itself,
        the async engine otherwise (see ``_sql_runners``)."""
        if self._owns_engine and threaded_sqlite_url(self.engine.url):
            configure = partial(configure_sqlite, synchronous=self._sqlite_synchronous)
            return ThreadedSQLite.open(self.engine.url, sqlite_settings(engine_options), configure)
        return AsyncRunner(self.engine)

    async def _read(self, body: Body[T]) -> T:
        """Run ``body`` as one read: no explicit transaction, one statement."""
        if not self._ready:
            await self.create_schema()
        async with self._translate():
            return await self._runner.read(body)

    async def _rows(self, statement: Select[Any], parameters: Mapping[str, Any]) -> Rows:
        """The rows of one of the store's `Statements`, run as a read with ``parameters``."""
        if not self._ready:
            await self.create_schema()
        try:  # not `_translate`, whose context manager costs ~1.7 µs a call
            return await self._runner.rows(statement, parameters)
        except (SQLAlchemyError, OSError, UnicodeError) as exc:
            raise_translated(exc)
            raise

    async def _written(self, statement: Select[Any], parameters: Mapping[str, Any]) -> Rows | None:
        """The rows of one of the store's `Statements` that writes, committed on its own, run
        on PostgreSQL's driver (`AsyncRunner.written`); None if it changed nothing (not taken
        by this store's runner or driver, or refused by the database): the caller then does
        the same writes its other way, which reports any refusal as it always does."""
        if not self._ready:
            await self.create_schema()
        runner = self._runner
        if not isinstance(runner, AsyncRunner):
            return None
        try:
            return await runner.written(statement, parameters)
        except (SQLAlchemyError, OSError, UnicodeError) as exc:
            raise_translated(exc)
            raise

    async def _changed_alone(
        self, statement: Executable, parameters: Mapping[str, Any]
    ) -> int | None:
        """The rows one of the store's `Statements` that writes changed, run outside any
        transaction and committed by the database on its own, where the runner runs
        statements so (`AsyncRunner.changed`); None where it does not: the caller then writes
        in a transaction."""
        if not self._ready:
            await self.create_schema()
        runner = self._runner
        if not isinstance(runner, AsyncRunner):
            return None
        async with self._translate():
            return await runner.changed(statement, parameters)

    async def _write(self, body: Body[T], *, translate_integrity: bool = True) -> T:
        """Run ``body`` in one transaction; `Rollback` raised in it undoes the transaction and
        returns its result."""
        if not self._ready:
            await self.create_schema()
        async with self._translate(translate_integrity):
            return await self._runner.write(body)

    async def _with_usage_row(self, owner: str, attempt: Callable[[], Awaitable[T | None]]) -> T:
        """``attempt``, a write that gives None when it found no usage row for ``owner`` (on
        MariaDB, where the row is made apart: see `insert`); then the row made in a
        transaction of its own and ``attempt`` run again."""
        done = await attempt()
        if done is None:
            made = self._statements.usage_row()
            await self._write(lambda connection: connection.execute(made, {"owner": owner}))
            done = await attempt()
        if done is None:  # usage rows are never removed: not seen, unless by a bug
            raise BackendUnavailable("The owner's usage row could not be made; retry.")
        return done

    def _count_in_usage(
        self, connection: Connection, owner: str, count: Callable[[], bool]
    ) -> Usage | None:
        """Run ``count``, a conditional update of ``owner``'s usage row in a write (True if it
        changed the row); None once it did. Only when it changed nothing is the row made sure
        of and ``count`` run again, except on MariaDB, where a missing row is made apart (see
        `insert`). Otherwise the row that refused it, read in the same write; `Rollback` with
        None where there is none (MariaDB, the owner's first file or upload: `_with_usage_row`
        makes the row and runs the write again)."""
        if count():
            return None
        if self._dialect not in ("mysql", "mariadb"):  # refused, or the owner's first use
            connection.execute(self._statements.usage_row(), {"owner": owner})
            if count():
                return None
        row = connection.execute(self._statements.usage(), {"owner": owner}).first()
        if row is None:
            raise Rollback(None)
        return usage_of(row)

    def _change(
        self, connection: Connection, statement: Insert | Update, parameters: Mapping[str, Any]
    ) -> int:
        """Run ``statement`` (an INSERT or UPDATE the store keeps, `Statements`) in a write's
        transaction; the rows it changed. On a SQLite file, compiled once and sent to the
        driver directly (``_sql_prepared``), a fraction of what SQLAlchemy's execution costs."""
        runner = self._runner
        if isinstance(runner, ThreadedSQLite):
            return runner.prepared(statement).execute(connection, parameters)
        return int(connection.execute(statement, parameters).rowcount)

    # -- shared by file and upload records ----------------------------------------------------

    def _add_usage(
        self,
        connection: Connection,
        owner: str,
        files: int,
        size: int,
        quota: Quota | None,
        *,
        open_uploads: int = 0,
    ) -> bool:
        """Add to the owner's usage row (made by `insert` or `create_upload`); False,
        changing nothing, if that would pass ``quota``."""
        caps = quota_caps(quota, files, size)
        change = self._statements.add_usage(
            "max_files" in caps, "max_bytes" in caps, open_uploads != 0
        )
        parameters: dict[str, Any] = {"b_owner": owner, "d_files": files, "d_bytes": size}
        if open_uploads:
            parameters["d_open"] = open_uploads
        parameters.update(caps)
        return self._change(connection, change, parameters) == 1

    @asynccontextmanager
    async def _translate(self, translate_integrity: bool = True) -> AsyncIterator[None]:
        try:
            yield
        except (SQLAlchemyError, OSError, UnicodeError) as exc:
            raise_translated(exc, translate_integrity)
            raise


def usage_of(row: Sequence[Any] | None) -> Usage:
    """The usage of a row of `Statements.usage` (zeros for no row)."""
    if row is None:
        return Usage(files=0, bytes=0)
    files, size, open_uploads = row
    return Usage(files=files, bytes=size, open_uploads=open_uploads)


def quota_caps(quota: Quota | None, files: int, size: int) -> dict[str, int]:
    """The bounds of ``quota`` that a change of the owner's usage by ``files`` and ``size``
    bytes must stay within, as the statements' parameters (``max_files``, ``max_bytes``): only
    what the change grows is capped."""
    caps: dict[str, int] = {}
    if quota is not None and files > 0 and quota.max_files is not None:
        caps["max_files"] = quota.max_files
    if quota is not None and size > 0 and quota.max_bytes is not None:
        caps["max_bytes"] = quota.max_bytes
    return caps
