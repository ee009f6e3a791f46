"""Database servers for the SQL metadata tests: PostgreSQL and MariaDB on 127.0.0.1.

Each test gets its own table prefix, so tests run in parallel against one server and drop only
their own tables.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
from sqlalchemy import event, make_url, select

from openai_files import MemoryMetadataStore, MetadataStore, SQLMetadataStore
from openai_files.metadata.sql_schema import SCHEMA_VERSION

from .support import require_service

POSTGRES_URL = os.environ.get(
    "OPENAI_FILES_TEST_POSTGRES", "postgresql+asyncpg://postgres@127.0.0.1:5432/postgres"
)
MARIADB_URL = os.environ.get(
    "OPENAI_FILES_TEST_MARIADB", "mysql+aiomysql://root@127.0.0.1:3306/test"
)

SERVERS = {"postgresql": (POSTGRES_URL, "PostgreSQL"), "mariadb": (MARIADB_URL, "MariaDB")}
"""The configured URL and the name of each database server."""


def require_database(server: str) -> str:
    """The configured URL of ``server`` (``postgresql`` or ``mariadb``), once its host and port
    answer: the test skips when they do not, and fails under CI=true."""
    url, name = SERVERS[server]
    parsed = make_url(url)
    default_port = 5432 if server == "postgresql" else 3306
    require_service(name, parsed.host or "127.0.0.1", parsed.port or default_port)
    return url


def unique_prefix() -> str:
    return f"t{uuid.uuid4().hex[:10]}_"


async def drop_tables(url: str, prefix: str) -> None:
    """Drop the tables of the store with ``prefix`` at ``url``."""
    store = SQLMetadataStore(url, table_prefix=prefix)
    await store.drop_schema()
    await store.aclose()


@asynccontextmanager
async def sql_store(server: str, prefix: str | None = None) -> AsyncIterator[SQLMetadataStore]:
    """A store on ``server`` with fresh tables, dropped afterwards; skips if the server is down."""
    url = require_database(server)
    store = SQLMetadataStore(url, table_prefix=prefix or unique_prefix())
    try:
        yield store
    finally:
        await store.drop_schema()
        await store.aclose()


SQL_KINDS = ["sqlite", "postgresql", "mariadb"]
"""Every built-in SQL database, for tests of the SQL store that must hold on each."""


@contextmanager
def statements_sent(store: SQLMetadataStore) -> Iterator[list[tuple[str, Any]]]:
    """The statements (and their parameters) the store sends to its database meanwhile, in
    order, as its engines hand them to the driver (``before_cursor_execute``)."""
    sent: list[tuple[str, Any]] = []

    def catch(_c: Any, _cursor: Any, statement: str, parameters: Any, *_rest: Any) -> None:
        sent.append((statement, parameters))

    for engine in store.statement_engines:
        event.listen(engine, "before_cursor_execute", catch)
    try:
        yield sent
    finally:
        for engine in store.statement_engines:
            event.remove(engine, "before_cursor_execute", catch)


@dataclass
class Tally:
    """What the store sent while counting."""

    statements: list[str] = field(default_factory=list)
    sent_begins: int = 0
    driver_transactions: set[int] = field(default_factory=set)
    commits: int = 0

    @property
    def begins(self) -> int:
        return self.sent_begins + len(self.driver_transactions)

    @property
    def transactions(self) -> int:
        return max(self.begins, self.commits)


@contextmanager
def counted(store: SQLMetadataStore) -> Iterator[Tally]:
    """What the store sends meanwhile: its statements, the transactions it begins (a ``BEGIN``
    sent as a statement, or asyncpg's own) and its commits."""
    tally = Tally()

    def statement(
        connection: Any, cursor: Any, text: str, parameters: Any, context: Any, many: bool
    ) -> None:
        if text.upper().startswith(("BEGIN", "START TRANSACTION")):
            tally.sent_begins += 1
        else:
            tally.statements.append(text)

    def executed(connection: Any, *_args: Any) -> None:
        # asyncpg sends its BEGIN itself, outside any cursor: it left a transaction open.
        driver = connection.connection.dbapi_connection
        transaction = getattr(driver, "_transaction", None)
        if transaction is not None:
            tally.driver_transactions.add(id(transaction))

    def commit(_connection: Any) -> None:
        tally.commits += 1

    listeners: list[tuple[str, Callable[..., None]]] = [
        ("before_cursor_execute", statement),
        ("after_cursor_execute", executed),
        ("commit", commit),
    ]
    for engine in store.statement_engines:
        for name, listener in listeners:
            event.listen(engine, name, listener)
    try:
        yield tally
    finally:
        for engine in store.statement_engines:
            for name, listener in listeners:
                event.remove(engine, name, listener)


@asynccontextmanager
async def any_sql_store(kind: str, sqlite_url: str) -> AsyncIterator[SQLMetadataStore]:
    """A store of ``kind`` (one of `SQL_KINDS`): SQLite at ``sqlite_url``, else `sql_store`."""
    if kind != "sqlite":
        async with sql_store(kind) as store:
            yield store
        return
    sqlite = SQLMetadataStore(sqlite_url)
    try:
        yield sqlite
    finally:
        await sqlite.aclose()


@asynccontextmanager
async def upgraded_replica(store: SQLMetadataStore) -> AsyncIterator[SQLMetadataStore]:
    """Two more stores on ``store``'s tables, started at once (so each may run the schema's
    upgrade steps beside the other), the tables found at `SCHEMA_VERSION`; the first is
    yielded, both are closed afterwards."""
    url = store.engine.url.render_as_string(hide_password=False)
    replicas = [SQLMetadataStore(url, table_prefix=store.table_prefix) for _ in range(2)]
    try:
        async with anyio.create_task_group() as group:
            for replica in replicas:
                group.start_soon(replica.create_schema)
        async with replicas[0].engine.connect() as connection:
            version = store.tables.version.c.version
            versions = (await connection.execute(select(version))).scalars()
            assert set(versions) == {SCHEMA_VERSION}
        yield replicas[0]
    finally:
        for replica in replicas:
            await replica.aclose()


STORE_KINDS = ["memory", "sqlite", "postgresql", "mariadb"]
"""Every built-in metadata store, for tests of the service that must hold on each."""


@asynccontextmanager
async def metadata_store(kind: str, tmp_path: Path) -> AsyncIterator[MetadataStore]:
    """An empty store of ``kind`` (one of `STORE_KINDS`), closed (and dropped) afterwards."""
    if kind == "memory":
        memory = MemoryMetadataStore()
        yield memory
        await memory.aclose()
    elif kind == "sqlite":
        sqlite = SQLMetadataStore(f"sqlite+aiosqlite:///{tmp_path / 'files.db'}")
        yield sqlite
        await sqlite.aclose()
    else:
        async with sql_store(kind) as store:
            yield store
