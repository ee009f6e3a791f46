"""`SQLMetadataStore`: records in a SQL database through SQLAlchemy Core (async).

One implementation for every database SQLAlchemy drives asynchronously: SQLite (``aiosqlite``,
the embedded default, in WAL mode), PostgreSQL (``asyncpg``) and MariaDB/MySQL (``aiomysql``).
Every invariant is enforced by the database (a primary key, conditional updates inside
transactions), never by locks in this process, so replicas can share one database.

The tables are ``<prefix>files`` and ``<prefix>schema_version``; the schema is created on first
use and its version recorded, so a later release can migrate an existing database.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any

import anyio
from sqlalchemy import (
    BigInteger,
    Column,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    and_,
    delete,
    event,
    insert,
    or_,
    select,
    update,
)
from sqlalchemy.dialects import mysql
from sqlalchemy.engine import Row, make_url
from sqlalchemy.exc import DBAPIError, IntegrityError, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.sql.elements import ColumnElement

from ..errors import BackendUnavailable, Conflict
from .base import DEFAULT_TABLE_PREFIX, Cursor, FileRecord, Order

__all__ = ["SCHEMA_VERSION", "SQLMetadataStore"]

SCHEMA_VERSION = 1

# Case- and accent-sensitive comparison of ids on MySQL/MariaDB, whose default collation is not.
_ID = String(64).with_variant(mysql.VARCHAR(64, collation="utf8mb4_bin"), "mysql", "mariadb")


def _tables(prefix: str) -> tuple[Table, Table]:
    metadata = MetaData()
    files = Table(
        f"{prefix}files",
        metadata,
        Column("id", _ID, primary_key=True),
        Column("owner", String(255), nullable=False),
        Column("purpose", String(64), nullable=False),
        Column("filename", Text, nullable=False),
        Column("bytes", BigInteger, nullable=False),
        Column("created_us", BigInteger, nullable=False),
        Column("expires_at", BigInteger, nullable=True),
        Column("status", String(16), nullable=False),
        Column("status_details", Text, nullable=True),
        Column("storage_key", String(255), nullable=False),
        Column("sha256", String(64), nullable=True),
        Column("media_type", String(255), nullable=True),
        Column("state", String(16), nullable=False),
        Index(f"{prefix}files_by_owner", "owner", "created_us", "id"),
        Index(f"{prefix}files_by_owner_purpose", "owner", "purpose", "created_us", "id"),
        mysql_charset="utf8mb4",
    )
    version = Table(
        f"{prefix}schema_version",
        metadata,
        Column("version", Integer, nullable=False),
        mysql_charset="utf8mb4",
    )
    return files, version


class SQLMetadataStore:
    """File records in SQL tables named with ``table_prefix``.

    Pass a SQLAlchemy URL (``sqlite+aiosqlite:///data/files.db``,
    ``postgresql+asyncpg://user@host/db``, ``mysql+aiomysql://root@host/db``) or an existing
    `AsyncEngine`, so a host application can keep the files tables in its own database. The
    store disposes only an engine it created itself.
    """

    def __init__(
        self,
        url_or_engine: str | AsyncEngine,
        *,
        table_prefix: str = DEFAULT_TABLE_PREFIX,
        engine_options: Mapping[str, Any] | None = None,
    ) -> None:
        if isinstance(url_or_engine, AsyncEngine):
            self.engine, self._owns_engine = url_or_engine, False
        else:
            self.engine, self._owns_engine = _make_engine(url_or_engine, engine_options), True
        self.table_prefix = table_prefix
        self._files, self._version = _tables(table_prefix)
        self._ready = False
        self._ready_lock = anyio.Lock()

    def __repr__(self) -> str:
        url = self.engine.url.render_as_string(hide_password=True)
        return f"SQLMetadataStore({url!r}, table_prefix={self.table_prefix!r})"

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
            await connection.run_sync(self._files.metadata.create_all, checkfirst=True)

    async def _check_version(self) -> None:
        async with self.engine.begin() as connection:
            found = (await connection.execute(select(self._version.c.version))).scalars().all()
            if not found:
                await connection.execute(insert(self._version).values(version=SCHEMA_VERSION))
            elif max(found) > SCHEMA_VERSION:
                raise BackendUnavailable(
                    f"The database schema is version {max(found)}, newer than this release "
                    f"understands ({SCHEMA_VERSION}); upgrade openai-files."
                )

    async def insert(self, record: FileRecord) -> None:
        async with self._transaction() as connection:
            try:
                await connection.execute(insert(self._files).values(**_row(record)))
            except IntegrityError as exc:
                raise Conflict(f"A file with id {record.id} exists already.") from exc

    async def commit(self, record: FileRecord) -> bool:
        values = _row(record.replace(state="active"))
        files = self._files
        async with self._transaction() as connection:
            result = await connection.execute(
                update(files)
                .where(files.c.id == record.id, files.c.owner == record.owner)
                .where(files.c.state == "pending")
                .values(**values)
            )
            return bool(result.rowcount == 1)

    async def get(self, owner: str, file_id: str, *, now: int) -> FileRecord | None:
        files = self._files
        query = select(files).where(files.c.id == file_id, files.c.owner == owner)
        async with self._transaction() as connection:
            row = (await connection.execute(query.where(self._visible(now)))).first()
        return None if row is None else _record(row)

    async def list(
        self,
        owner: str,
        *,
        now: int,
        purpose: str | None = None,
        after: Cursor | None = None,
        limit: int,
        order: Order = "desc",
    ) -> list[FileRecord]:
        files = self._files
        query = select(files).where(files.c.owner == owner, self._visible(now))
        if purpose is not None:
            query = query.where(files.c.purpose == purpose)
        if after is not None:
            query = query.where(self._beyond(after, order))
        if order == "asc":
            query = query.order_by(files.c.created_us.asc(), files.c.id.asc())
        else:
            query = query.order_by(files.c.created_us.desc(), files.c.id.desc())
        async with self._transaction() as connection:
            rows = (await connection.execute(query.limit(limit))).all()
        return [_record(row) for row in rows]

    async def begin_delete(self, owner: str, file_id: str, *, now: int) -> FileRecord | None:
        files = self._files
        mine = and_(files.c.id == file_id, files.c.owner == owner, self._visible(now))
        # Write first: the conditional update takes the row's write lock (and SQLite's database
        # lock) before anything is read, so concurrent deleters serialise instead of deadlocking.
        async with self._transaction() as connection:
            result = await connection.execute(update(files).where(mine).values(state="deleting"))
            if result.rowcount != 1:
                return None
            row = (await connection.execute(select(files).where(files.c.id == file_id))).one()
        return _record(row)

    async def remove(self, owner: str, file_id: str) -> None:
        files = self._files
        async with self._transaction() as connection:
            await connection.execute(
                delete(files).where(files.c.id == file_id, files.c.owner == owner)
            )

    async def aclose(self) -> None:
        if self._owns_engine:
            await self.engine.dispose()

    async def drop_schema(self) -> None:
        """Drop this store's tables (for tests and uninstalls)."""
        async with self._translate(), self.engine.begin() as connection:
            await connection.run_sync(self._files.metadata.drop_all, checkfirst=True)
        self._ready = False

    def _visible(self, now: int) -> ColumnElement[bool]:
        files = self._files
        return and_(
            files.c.state == "active",
            or_(files.c.expires_at.is_(None), files.c.expires_at > now),
        )

    def _beyond(self, after: Cursor, order: Order) -> ColumnElement[bool]:
        created_us, file_id = after
        column_time, column_id = self._files.c.created_us, self._files.c.id
        if order == "asc":
            return or_(
                column_time > created_us, and_(column_time == created_us, column_id > file_id)
            )
        return or_(column_time < created_us, and_(column_time == created_us, column_id < file_id))

    @asynccontextmanager
    async def _transaction(self) -> AsyncIterator[AsyncConnection]:
        if not self._ready:
            await self.create_schema()
        async with self._translate(), self.engine.begin() as connection:
            yield connection

    @asynccontextmanager
    async def _translate(self) -> AsyncIterator[None]:
        try:
            yield
        except IntegrityError:
            raise
        except (SQLAlchemyError, OSError) as exc:
            raise BackendUnavailable(
                f"The metadata database failed: {type(exc).__name__}. Retry the request."
            ) from exc


def _make_engine(url: str, options: Mapping[str, Any] | None) -> AsyncEngine:
    parsed = make_url(url)
    settings: dict[str, Any] = {"pool_pre_ping": True}
    if parsed.get_backend_name() == "sqlite":
        settings = {"connect_args": {"timeout": 30}}
    elif parsed.get_backend_name() in {"mysql", "mariadb"} and "charset" not in parsed.query:
        parsed = parsed.update_query_dict({"charset": "utf8mb4"})
    settings.update(options or {})
    engine = create_async_engine(parsed, **settings)
    if parsed.get_backend_name() == "sqlite":
        event.listen(engine.sync_engine, "connect", _configure_sqlite)
    return engine


def _configure_sqlite(connection: Any, _record: Any) -> None:
    cursor = connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


_COLUMNS = (
    "id",
    "owner",
    "purpose",
    "filename",
    "bytes",
    "created_us",
    "expires_at",
    "status",
    "status_details",
    "storage_key",
    "sha256",
    "media_type",
    "state",
)


def _row(record: FileRecord) -> dict[str, Any]:
    return {name: getattr(record, name) for name in _COLUMNS}


def _record(row: Row[Any]) -> FileRecord:
    mapping = row._mapping
    return FileRecord(**{name: mapping[name] for name in _COLUMNS})
