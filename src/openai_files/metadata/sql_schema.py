"""The SQL store's tables, named with a prefix, and the dialect-specific statements it needs.

Schema version 1:

- ``<prefix>files``: one row per file, in any state; ``hold_count`` mirrors the rows of
  ``holds`` so that visibility and delete protection are one row's columns.
- ``<prefix>holds``: who holds which file (one row per file and holder).
- ``<prefix>usage``: per owner, the count and bytes of pending and active files (plus the bytes
  their uploads reserve) and the count of open uploads, kept equal to them by every write, so
  that quotas are checked with one conditional update.
- ``<prefix>idempotency``: which file an owner's ``Idempotency-Key`` created, and when.
- ``<prefix>uploads`` and ``<prefix>upload_parts``: the Uploads API's uploads and their parts;
  each upload keeps running totals of its parts (``received``, ``part_count``) and the bytes it
  counts in its owner's usage (``reserved``).
- ``<prefix>schema_version``: the version the tables were created at.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    BigInteger,
    Column,
    Connection,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    and_,
    func,
    insert,
    inspect,
    literal,
    select,
    update,
)
from sqlalchemy.dialects import mysql, postgresql, sqlite
from sqlalchemy.sql.dml import Insert

from .base import OPEN_UPLOAD_STATES

__all__ = ["SCHEMA_VERSION", "Tables", "add_upload_accounting", "insert_ignoring_duplicates"]

SCHEMA_VERSION = 1

# Case- and accent-sensitive comparison of ids on MySQL/MariaDB, whose default collation is not.
_ID = String(64).with_variant(mysql.VARCHAR(64, collation="utf8mb4_bin"), "mysql", "mariadb")
_OWNER = String(255).with_variant(mysql.VARCHAR(255, collation="utf8mb4_bin"), "mysql", "mariadb")
_CHARSET = "utf8mb4"


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

    @classmethod
    def named(cls, prefix: str) -> Tables:
        metadata = MetaData()
        files = Table(
            f"{prefix}files",
            metadata,
            Column("id", _ID, primary_key=True),
            Column("owner", _OWNER, nullable=False),
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
            Column("changed_at", BigInteger, nullable=False, default=0),
            Column("hold_count", Integer, nullable=False, default=0),
            Column("etag", String(80), nullable=True),
            Index(f"{prefix}files_by_owner", "owner", "created_us", "id"),
            Index(f"{prefix}files_by_owner_purpose", "owner", "purpose", "created_us", "id"),
            Index(f"{prefix}files_by_state_expiry", "state", "expires_at"),
            Index(f"{prefix}files_by_state_change", "state", "changed_at"),
            Index(f"{prefix}files_by_storage_key", "storage_key"),
            mysql_charset=_CHARSET,
        )
        holds = Table(
            f"{prefix}holds",
            metadata,
            Column("file_id", _ID, primary_key=True),
            Column("holder", String(255), primary_key=True),
            Column("created_at", BigInteger, nullable=False),
            mysql_charset=_CHARSET,
        )
        usage = Table(
            f"{prefix}usage",
            metadata,
            Column("owner", _OWNER, primary_key=True),
            Column("files", BigInteger, nullable=False),
            Column("bytes", BigInteger, nullable=False),
            _counter("open_uploads"),
            mysql_charset=_CHARSET,
        )
        idempotency = Table(
            f"{prefix}idempotency",
            metadata,
            Column("owner", _OWNER, primary_key=True),
            Column("key", String(255), primary_key=True),
            Column("file_id", _ID, nullable=False),
            Column("created_at", BigInteger, nullable=False),
            mysql_charset=_CHARSET,
        )
        uploads = Table(
            f"{prefix}uploads",
            metadata,
            Column("id", _ID, primary_key=True),
            Column("owner", _OWNER, nullable=False),
            Column("filename", Text, nullable=False),
            Column("purpose", String(64), nullable=False),
            Column("bytes", BigInteger, nullable=False),
            Column("mime_type", String(255), nullable=False),
            Column("expires_after", BigInteger, nullable=True),
            Column("created_at", BigInteger, nullable=False),
            Column("expires_at", BigInteger, nullable=False),
            Column("state", String(16), nullable=False),
            Column("file_id", _ID, nullable=True),
            _counter("received"),
            _counter("part_count"),
            _counter("reserved"),
            Index(f"{prefix}uploads_by_state", "state", "expires_at"),
            mysql_charset=_CHARSET,
        )
        parts = Table(
            f"{prefix}upload_parts",
            metadata,
            Column("id", _ID, primary_key=True),
            Column("upload_id", _ID, nullable=False),
            Column("owner", _OWNER, nullable=False),
            Column("bytes", BigInteger, nullable=False),
            Column("sha256", String(64), nullable=False),
            Column("storage_key", String(255), nullable=False),
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
        return cls(metadata, files, holds, usage, idempotency, uploads, parts, version)


def insert_ignoring_duplicates(dialect: str, table: Table, values: dict[str, Any]) -> Insert:
    """An INSERT that does nothing when the row's primary key exists already."""
    if dialect == "postgresql":
        return postgresql.insert(table).values(**values).on_conflict_do_nothing()
    if dialect == "sqlite":
        return sqlite.insert(table).values(**values).on_conflict_do_nothing()
    if dialect in ("mysql", "mariadb"):
        return mysql.insert(table).values(**values).prefix_with("IGNORE")
    raise NotImplementedError(f"SQLMetadataStore does not support the {dialect} dialect")


def add_upload_accounting(connection: Connection, tables: Tables) -> None:
    """Upgrade tables made before uploads were counted in the usage: add the usage's
    ``open_uploads`` and the uploads' ``received``, ``part_count`` and ``reserved`` columns
    where they are missing, then count what is stored: each upload's totals from its parts,
    and each owner's usage from their pending and active files, their uploads' parts (which
    count until they are discarded) and their open uploads.

    Idempotent (it adds only missing columns and recounts rather than adds), so it may run
    again after being cut short, or on several replicas at once. A plain function of a
    synchronous `Connection` (``AsyncConnection.run_sync``); tables created by this release
    have the columns already and count correctly, so it changes nothing there.
    """
    usage, uploads, parts, files = tables.usage, tables.uploads, tables.parts, tables.files
    preparer = connection.dialect.identifier_preparer
    for table, names in (
        (usage, ("open_uploads",)),
        (uploads, ("received", "part_count", "reserved")),
    ):
        present = {column["name"] for column in inspect(connection).get_columns(table.name)}
        for name in names:
            if name in present:
                continue
            column = table.c[name]
            kind = column.type.compile(dialect=connection.dialect)
            connection.exec_driver_sql(
                f"ALTER TABLE {preparer.format_table(table)} ADD COLUMN "
                f"{preparer.format_column(column)} {kind} DEFAULT 0 NOT NULL"
            )
    of_upload = parts.c.upload_id == uploads.c.id
    received = select(func.coalesce(func.sum(parts.c.bytes), 0)).where(of_upload)
    connection.execute(
        update(uploads).values(
            received=received.scalar_subquery(),
            part_count=select(func.count()).where(of_upload).scalar_subquery(),
            reserved=received.scalar_subquery(),
        )
    )
    missing = (
        select(uploads.c.owner, literal(0), literal(0), literal(0))
        .where(uploads.c.owner.not_in(select(usage.c.owner)))
        .distinct()
    )
    connection.execute(
        insert(usage).from_select(["owner", "files", "bytes", "open_uploads"], missing)
    )
    counted = and_(files.c.owner == usage.c.owner, files.c.state.in_(("pending", "active")))
    of_owner = uploads.c.owner == usage.c.owner
    file_bytes = select(func.coalesce(func.sum(files.c.bytes), 0)).where(counted)
    reserved = select(func.coalesce(func.sum(uploads.c.reserved), 0)).where(of_owner)
    open_uploads = select(func.count()).where(
        and_(of_owner, uploads.c.state.in_(OPEN_UPLOAD_STATES))
    )
    connection.execute(
        update(usage).values(
            files=select(func.count()).where(counted).scalar_subquery(),
            bytes=file_bytes.scalar_subquery() + reserved.scalar_subquery(),
            open_uploads=open_uploads.scalar_subquery(),
        )
    )
