"""Backends from URLs, as the standalone server and configuration files name them.

Storage: ``file:///abs/path`` or ``file:relative/path``, ``memory://``, and (extra ``[s3]``)
``s3://bucket/prefix?endpoint=...&region=...&allow_http=true`` (see `S3Storage.from_url`).
Metadata: ``memory://`` or any async SQLAlchemy URL (``sqlite+aiosqlite:///data/files.db``,
``postgresql+asyncpg://...``, ``mysql+aiomysql://...``).
"""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import unquote, urlsplit

from .metadata.base import DEFAULT_TABLE_PREFIX, MetadataStore
from .metadata.memory import MemoryMetadataStore
from .policy import Policy
from .service import FilesService
from .storage.base import Storage
from .storage.local import LocalStorage
from .storage.memory import MemoryStorage

__all__ = ["open_embedded", "open_metadata", "open_service", "open_storage"]


def open_storage(url: str) -> Storage:
    """The storage backend a URL names; `ValueError` for a scheme this release does not know."""
    parts = urlsplit(url)
    if parts.scheme == "memory":
        return MemoryStorage()
    if parts.scheme == "file":
        path = unquote(parts.netloc + parts.path)
        if not path:
            raise ValueError(f"a file:// storage URL needs a path: {url!r}")
        return LocalStorage(path)
    if parts.scheme == "s3":
        from .storage.s3 import S3Storage  # the [s3] extra: imported only when chosen

        return S3Storage.from_url(url)
    raise ValueError(f"unknown storage URL {url!r}: use file:///path, s3://bucket or memory://")


def open_metadata(url: str, *, table_prefix: str = DEFAULT_TABLE_PREFIX) -> MetadataStore:
    """The metadata store a URL names: ``memory://`` or an async SQLAlchemy URL."""
    if url.startswith("memory:"):
        return MemoryMetadataStore()
    from .metadata.sql import SQLMetadataStore

    return SQLMetadataStore(url, table_prefix=table_prefix)


def open_service(
    storage: str,
    metadata: str,
    *,
    policy: Policy | None = None,
    table_prefix: str = DEFAULT_TABLE_PREFIX,
) -> FilesService:
    """A `FilesService` over the backends two URLs name."""
    return FilesService(
        open_storage(storage), open_metadata(metadata, table_prefix=table_prefix), policy=policy
    )


def open_embedded(
    data_dir: str | os.PathLike[str], *, policy: Policy | None = None
) -> FilesService:
    """The embedded default: files under ``data_dir/files``, records in SQLite at
    ``data_dir/files.db`` (the directory is created if missing)."""
    root = Path(data_dir)
    root.mkdir(parents=True, exist_ok=True)
    return FilesService(
        LocalStorage(root / "files"),
        open_metadata(f"sqlite+aiosqlite:///{root / 'files.db'}"),
        policy=policy,
    )
