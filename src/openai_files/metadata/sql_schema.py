"""The SQL store's tables, named with a prefix, and the dialect-specific statements it needs.

Schema version 7 (`openai_files.metadata.sql_migrations` upgrades older tables):

- ``<prefix>files``: one row per file, in any state; ``hold_count`` mirrors the rows of
  ``holds`` so that visibility and delete protection are one row's columns. The owner's
  indexes (``files_by_owner``, ``files_by_owner_purpose``) end with the columns of visibility
  (``state``, ``expires_at``, ``hold_count``), so the rows an offset page skips, or a page
  passes over because they are not visible, are judged from the index alone.
- ``<prefix>holds``: who holds which file (one row per file and holder).
- ``<prefix>usage``: per owner, the count and bytes of pending and active files (plus the bytes
  their uploads reserve) and the count of open uploads, kept equal to them by every write, so
  that quotas are checked with one conditional update.
- ``<prefix>file_counts``: per owner and purpose, the count of ``active`` files, kept equal to
  them by every write that makes a file active or takes it out of that state, so that the
  ``total`` of an offset page (`OffsetPaging.count`) is read, not counted.
- ``<prefix>idempotency``: which file an owner's ``Idempotency-Key`` created, and when.
- ``<prefix>uploads`` and ``<prefix>upload_parts``: the Uploads API's uploads and their parts;
  each upload keeps running totals of its parts (``received``, ``part_count``) and the bytes it
  counts in its owner's usage (``reserved``).
- ``<prefix>file_bytes``: the bytes of small files the store keeps itself (`InlineFiles`),
  by their record's storage key.
- ``<prefix>schema_version``: the version the tables are at.

Every column the store compares for equality with a value it was given (owners, ids,
idempotency keys, holders, purposes, storage keys) is an `ExactString`: two values are equal
only when they are the same characters, so ``alice`` and ``alice `` are two owners and
``Report-2024`` and ``report-2024`` two keys, on every database.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    BigInteger,
    Column,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    func,
)
from sqlalchemy.dialects import mysql, postgresql, sqlite
from sqlalchemy.engine import Dialect
from sqlalchemy.sql.dml import Insert
from sqlalchemy.sql.elements import BindParameter, ColumnElement
from sqlalchemy.types import TypeDecorator, TypeEngine

__all__ = [
    "SCHEMA_VERSION",
    "VISIBILITY",
    "ExactString",
    "Tables",
    "insert_adding",
    "insert_ignoring_duplicates",
]

SCHEMA_VERSION = 7

VISIBILITY = ("state", "expires_at", "hold_count")
"""The columns that decide whether a client sees a file, at the end of the owner's indexes."""

_CHARSET = "utf8mb4"
MARIADB_EXACT_COLLATION = "utf8mb4_nopad_bin"
"""Binary and NO PAD on MariaDB (10.2 and later)."""
MYSQL_EXACT_COLLATION = "utf8mb4_0900_bin"
"""Binary and NO PAD on MySQL (8.0.17 and later)."""


class ExactString(TypeDecorator[str]):
    """A string of up to ``length`` characters, equal only to the very same characters.

    SQLite compares with its default ``BINARY`` collation (memcmp), PostgreSQL with the
    database's collation, which for equality is byte for byte (a database's default collation
    is always deterministic), and neither pads. MySQL and MariaDB compare with a column's
    collation, whose default there ignores case and accents and whose ``utf8mb4_bin`` still
    ignores trailing spaces (PAD SPACE): there the column gets the binary NO PAD collation of
    the server it is created on. It stays a character column, so values read back are `str`.
    """

    impl = String
    cache_ok = True

    def __init__(self, length: int) -> None:
        super().__init__(length)
        self.length = length

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if dialect.name in ("mysql", "mariadb"):
            # A ``mysql://`` URL reaching MariaDB keeps the dialect name ``mysql``; the server
            # it is connected to says which collation exists there.
            collation = (
                MARIADB_EXACT_COLLATION
                if getattr(dialect, "is_mariadb", False)
                else MYSQL_EXACT_COLLATION
            )
            varchar = mysql.VARCHAR(self.length, charset=_CHARSET, collation=collation)
            return dialect.type_descriptor(varchar)
        return dialect.type_descriptor(String(self.length))


class HexBlob(TypeDecorator[bytes]):
    """MySQL's and MariaDB's ``MEDIUMBLOB`` (up to 16 MiB; a ``BLOB`` holds 64 KiB, less than
    the 256 KiB of the largest small file), its values sent as hex text and turned back into
    bytes by the server (``UNHEX``): aiomysql (0.3.2) escapes a `bytes` parameter with a
    function that PyMySQL 1.2.3 and later replace with a placeholder string, so any `bytes`
    parameter fails there (aio-libs/aiomysql#1080)."""

    impl = mysql.MEDIUMBLOB
    cache_ok = True

    def bind_expression(self, bindvalue: BindParameter[bytes]) -> ColumnElement[bytes]:
        return func.unhex(bindvalue, type_=self)

    def bind_processor(self, dialect: Dialect) -> Callable[[Any], Any]:
        """Hex text, not through the ``BLOB``'s own processor (which wants bytes)."""
        return _hex


def _hex(value: Any) -> str | None:
    return None if value is None else bytes(value).hex()


def _id() -> ExactString:
    return ExactString(64)


def _name() -> ExactString:
    """An owner, holder, idempotency key or storage key: up to 255 characters."""
    return ExactString(255)


def _counter(name: str) -> Column[int]:
    """A running total, zero in a new row (and in the rows of a table it is added to)."""
    return Column(name, BigInteger, nullable=False, default=0, server_default="0")


@dataclass(frozen=True)
class Tables:
    """The tables of one store, named with its prefix."""

    metadata: MetaData
    files: Table
    holds: Table
    usage: Table
    idempotency: Table
    uploads: Table
    parts: Table
    version: Table
    counts: Table
    file_bytes: Table

    @classmethod
    def named(cls, prefix: str) -> Tables:
        metadata = MetaData()
        files = Table(
            f"{prefix}files",
            metadata,
            Column("id", _id(), primary_key=True),
            Column("owner", _name(), nullable=False),
            Column("purpose", ExactString(64), nullable=False),
            Column("filename", Text, nullable=False),
            Column("bytes", BigInteger, nullable=False),
            Column("created_us", BigInteger, nullable=False),
            Column("expires_at", BigInteger, nullable=True),
            Column("status", String(16), nullable=False),
            Column("status_details", Text, nullable=True),
            Column("storage_key", _name(), nullable=False),
            Column("sha256", String(64), nullable=True),
            Column("media_type", String(255), nullable=True),
            Column("state", String(16), nullable=False),
            Column("changed_at", BigInteger, nullable=False, default=0),
            Column("hold_count", Integer, nullable=False, default=0),
            Column("etag", String(80), nullable=True),
            Index(f"{prefix}files_by_owner", "owner", "created_us", "id", *VISIBILITY),
            Index(
                f"{prefix}files_by_owner_purpose",
                "owner",
                "purpose",
                "created_us",
                "id",
                *VISIBILITY,
            ),
            Index(f"{prefix}files_by_state_expiry", "state", "expires_at"),
            Index(f"{prefix}files_by_state_change", "state", "changed_at"),
            Index(f"{prefix}files_by_storage_key", "storage_key"),
            mysql_charset=_CHARSET,
        )
        holds = Table(
            f"{prefix}holds",
            metadata,
            Column("file_id", _id(), primary_key=True),
            Column("holder", _name(), primary_key=True),
            Column("created_at", BigInteger, nullable=False),
            mysql_charset=_CHARSET,
        )
        usage = Table(
            f"{prefix}usage",
            metadata,
            Column("owner", _name(), primary_key=True),
            Column("files", BigInteger, nullable=False),
            Column("bytes", BigInteger, nullable=False),
            _counter("open_uploads"),
            mysql_charset=_CHARSET,
        )
        idempotency = Table(
            f"{prefix}idempotency",
            metadata,
            Column("owner", _name(), primary_key=True),
            Column("key", _name(), primary_key=True),
            Column("file_id", _id(), nullable=False),
            Column("created_at", BigInteger, nullable=False),
            mysql_charset=_CHARSET,
        )
        uploads = Table(
            f"{prefix}uploads",
            metadata,
            Column("id", _id(), primary_key=True),
            Column("owner", _name(), nullable=False),
            Column("filename", Text, nullable=False),
            Column("purpose", ExactString(64), nullable=False),
            Column("bytes", BigInteger, nullable=False),
            Column("mime_type", String(255), nullable=False),
            Column("expires_after", BigInteger, nullable=True),
            Column("created_at", BigInteger, nullable=False),
            Column("expires_at", BigInteger, nullable=False),
            Column("state", String(16), nullable=False),
            Column("file_id", _id(), nullable=True),
            _counter("received"),
            _counter("part_count"),
            _counter("reserved"),
            Column("multipart", Text, nullable=True),
            _counter("part_numbers"),
            Index(f"{prefix}uploads_by_state", "state", "expires_at"),
            mysql_charset=_CHARSET,
        )
        parts = Table(
            f"{prefix}upload_parts",
            metadata,
            Column("id", _id(), primary_key=True),
            Column("upload_id", _id(), nullable=False),
            Column("owner", _name(), nullable=False),
            Column("bytes", BigInteger, nullable=False),
            Column("sha256", String(64), nullable=False),
            Column("storage_key", _name(), nullable=False),
            Column("created_at", BigInteger, nullable=False),
            Index(f"{prefix}upload_parts_by_upload", "upload_id"),
            mysql_charset=_CHARSET,
        )
        version = Table(
            f"{prefix}schema_version",
            metadata,
            Column("version", Integer, nullable=False),
            mysql_charset=_CHARSET,
        )
        counts = Table(
            f"{prefix}file_counts",
            metadata,
            Column("owner", _name(), primary_key=True),
            Column("purpose", ExactString(64), primary_key=True),
            _counter("files"),
            mysql_charset=_CHARSET,
        )
        file_bytes = Table(
            f"{prefix}file_bytes",
            metadata,
            Column("storage_key", _name(), primary_key=True),
            Column("data", LargeBinary().with_variant(HexBlob(), "mysql", "mariadb")),
            mysql_charset=_CHARSET,
        )
        return cls(
            metadata, files, holds, usage, idempotency, uploads, parts, version, counts, file_bytes
        )


def insert_ignoring_duplicates(dialect: str, table: Table, values: dict[str, Any]) -> Insert:
    """An INSERT that does nothing when the row's primary key exists already."""
    if dialect == "postgresql":
        return postgresql.insert(table).values(**values).on_conflict_do_nothing()
    if dialect == "sqlite":
        return sqlite.insert(table).values(**values).on_conflict_do_nothing()
    if dialect in ("mysql", "mariadb"):
        return mysql.insert(table).values(**values).prefix_with("IGNORE")
    raise NotImplementedError(f"SQLMetadataStore does not support the {dialect} dialect")


def insert_adding(dialect: str, table: Table, values: dict[str, Any], column: str) -> Insert:
    """An INSERT of ``values`` that, when the row's primary key exists already, adds the
    value given for ``column`` to that row's instead (one statement, no read first)."""
    key = [part.name for part in table.primary_key]
    if dialect == "postgresql":
        upsert = postgresql.insert(table).values(**values)
        return upsert.on_conflict_do_update(
            index_elements=key, set_={column: table.c[column] + upsert.excluded[column]}
        )
    if dialect == "sqlite":
        lite = sqlite.insert(table).values(**values)
        return lite.on_conflict_do_update(
            index_elements=key, set_={column: table.c[column] + lite.excluded[column]}
        )
    if dialect in ("mysql", "mariadb"):
        added = mysql.insert(table).values(**values)
        adding: Insert = added.on_duplicate_key_update(
            {column: table.c[column] + added.inserted[column]}
        )
        return adding
    raise NotImplementedError(f"SQLMetadataStore does not support the {dialect} dialect")
