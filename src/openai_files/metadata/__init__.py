"""Metadata stores: file records, always scoped by owner. The contract is in `MetadataStore`.

Backends: `MemoryMetadataStore` (tests, one process) and `SQLMetadataStore` (SQLAlchemy Core,
async: SQLite embedded by default, PostgreSQL or MariaDB/MySQL for several replicas).
"""

from __future__ import annotations

from .base import (
    Cursor,
    FileRecord,
    InlineFiles,
    MetadataStore,
    OffsetPaging,
    Order,
    RecordState,
)
from .memory import MemoryMetadataStore

__all__ = [
    "Cursor",
    "FileRecord",
    "InlineFiles",
    "MemoryMetadataStore",
    "MetadataStore",
    "OffsetPaging",
    "Order",
    "RecordState",
]
