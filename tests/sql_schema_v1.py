"""The SQL store's tables exactly as schema version 1 created them, for migration tests.

Frozen on purpose: later versions change `openai_files.metadata.sql_schema`, never this file.
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, Index, Integer, MetaData, String, Table, Text
from sqlalchemy.dialects import mysql

VERSION = 1

# Version 1 compared ids and owners with utf8mb4_bin (PAD SPACE) on MySQL/MariaDB, and every
# other string column with the table's default collation (case- and accent-insensitive).
_ID = String(64).with_variant(mysql.VARCHAR(64, collation="utf8mb4_bin"), "mysql", "mariadb")
_OWNER = String(255).with_variant(mysql.VARCHAR(255, collation="utf8mb4_bin"), "mysql", "mariadb")
_CHARSET = "utf8mb4"


def v1_metadata(prefix: str) -> MetaData:
    """The version 1 tables named with ``prefix``."""
    metadata = MetaData()
    Table(
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
    Table(
        f"{prefix}holds",
        metadata,
        Column("file_id", _ID, primary_key=True),
        Column("holder", String(255), primary_key=True),
        Column("created_at", BigInteger, nullable=False),
        mysql_charset=_CHARSET,
    )
    Table(
        f"{prefix}usage",
        metadata,
        Column("owner", _OWNER, primary_key=True),
        Column("files", BigInteger, nullable=False),
        Column("bytes", BigInteger, nullable=False),
        mysql_charset=_CHARSET,
    )
    Table(
        f"{prefix}idempotency",
        metadata,
        Column("owner", _OWNER, primary_key=True),
        Column("key", String(255), primary_key=True),
        Column("file_id", _ID, nullable=False),
        Column("created_at", BigInteger, nullable=False),
        mysql_charset=_CHARSET,
    )
    Table(
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
        Index(f"{prefix}uploads_by_state", "state", "expires_at"),
        mysql_charset=_CHARSET,
    )
    Table(
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
    Table(
        f"{prefix}schema_version",
        metadata,
        Column("version", Integer, nullable=False),
        mysql_charset=_CHARSET,
    )
    return metadata
