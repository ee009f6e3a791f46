"""`SQLMetadataStore`: records in a SQL database through SQLAlchemy Core (async).

One implementation for every database SQLAlchemy drives asynchronously: SQLite (``aiosqlite``,
the embedded default, in WAL mode), PostgreSQL (``asyncpg``) and MariaDB/MySQL (``aiomysql``).
Every invariant is enforced by the database, never by locks in this process, so replicas can
share one database: state changes are conditional updates whose row count says who won, a
quota is one conditional update of the owner's usage row, and a hold and a delete contend for
the same file row. The tables are described in `openai_files.metadata.sql_schema`; they are
created on first use and their version recorded; tables of an older version are upgraded in
place at start (`openai_files.metadata.sql_migrations`).

Each operation is one synchronous body over a SQLAlchemy ``Connection``, run in one go as a
read (one statement, no transaction) or a write (one transaction): on a SQLite file in threads
that keep their ``sqlite3`` connection, writes one after another on one of them, the hottest
reads compiled once and run on the driver directly; elsewhere through the async engine
(``_sql_runners``), the hottest reads there too on the driver of a pooled connection.

The store is put together from private modules, one concern each: the engine, its tables,
reads, writes and usage rows (``_sql_engine``), how the engine is made and its connections set
up (``_sql_connect``), the database's errors as the library's (``_sql_errors``), how a body is
run (``_sql_runners``), SQLite's threads (``_sqlite_threads``), statements run on the driver
directly (``_sql_prepared`` on SQLite, ``_sql_direct`` on PostgreSQL and MariaDB), the hottest
statements, built once (``_sql_statements``), the file records (``_sql_files``), their
deletes, holds and sweep claims (``_sql_deletes``) and the upload records (``_sql_uploads``).
"""

from __future__ import annotations

from ._sql_deletes import SQLFileDeletes
from ._sql_uploads import SQLUploadRecords
from .sql_schema import SCHEMA_VERSION

__all__ = ["SCHEMA_VERSION", "SQLMetadataStore"]


class SQLMetadataStore(SQLFileDeletes, SQLUploadRecords):
    """File records in SQL tables named with ``table_prefix``.

    Pass a SQLAlchemy URL (``sqlite+aiosqlite:///data/files.db``,
    ``postgresql+asyncpg://user@host/db``, ``mysql+aiomysql://root@host/db``) or an existing
    `AsyncEngine`, so a host application can keep the files tables in its own database. The
    store disposes only an engine it created itself.
    """

    def __repr__(self) -> str:
        url = self.engine.url.render_as_string(hide_password=True)
        return f"SQLMetadataStore({url!r}, table_prefix={self.table_prefix!r})"
