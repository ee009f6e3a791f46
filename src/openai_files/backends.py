"""Backends from URLs, as the standalone server and configuration files name them.

Storage: ``file:///abs/path`` or ``file:relative/path`` (``?fsync=false`` to trade durability
for speed, see `LocalStorage`), ``memory://``, and (extra ``[s3]``)
``s3://bucket/prefix?endpoint=...&region=...&allow_http=true`` (see `S3Storage.from_url`).
Metadata: ``memory://`` or any async SQLAlchemy URL (``sqlite+aiosqlite:///data/files.db``,
with ``?synchronous=normal`` to trade durability for speed; ``postgresql+asyncpg://...``,
``mysql+aiomysql://...``).
"""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import parse_qsl, unquote, urlsplit

from ._inline import EMBEDDED_INLINE_MAX
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
        return LocalStorage(path, fsync=_fsync_option(url, parts.query))
    if parts.scheme == "s3":
        from .storage.s3 import S3Storage  # the [s3] extra: imported only when chosen

        return S3Storage.from_url(url)
    raise ValueError(f"unknown storage URL {url!r}: use file:///path, s3://bucket or memory://")


def _fsync_option(url: str, query: str) -> bool:
    """The ``fsync`` option of a ``file:`` URL (true by default); `ValueError` for any other."""
    options = dict(parse_qsl(query, keep_blank_values=True))
    fsync = options.pop("fsync", "true").lower()
    if options or fsync not in _BOOLEANS:
        raise ValueError(
            f"file:// storage URL {url!r}: the only option is fsync=true (durable, the default) "
            "or fsync=false (faster; the last files may be lost on power loss)"
        )
    return _BOOLEANS[fsync]


_BOOLEANS = {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}


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
    inline_max: int = 0,
) -> FilesService:
    """A `FilesService` over the backends two URLs name (``inline_max`` as `FilesService`'s)."""
    return FilesService(
        open_storage(storage),
        open_metadata(metadata, table_prefix=table_prefix),
        policy=policy,
        inline_max=inline_max,
    )


def open_embedded(
    data_dir: str | os.PathLike[str],
    *,
    policy: Policy | None = None,
    durable: bool = True,
    inline_max: int = EMBEDDED_INLINE_MAX,
) -> FilesService:
    """The embedded default: files under ``data_dir/files``, records in SQLite at
    ``data_dir/files.db`` (the directory is created if missing); files of up to
    ``inline_max`` bytes (64 KiB; 0: none) kept in SQLite with their records
    (`FilesService`'s ``inline_max``).

    ``durable`` (the default): a file is on the device, bytes and record, when its create
    returns, and survives a power cut. ``durable=False`` skips the flushes (``fsync``, and
    SQLite's ``synchronous=NORMAL``): faster, and a crash of the process still loses nothing
    created, but a power cut may lose the last files.
    """
    root = Path(data_dir)
    root.mkdir(parents=True, exist_ok=True)
    synchronous = "" if durable else "?synchronous=normal"
    return FilesService(
        LocalStorage(root / "files", fsync=durable),
        open_metadata(f"sqlite+aiosqlite:///{root / 'files.db'}{synchronous}"),
        policy=policy,
        inline_max=inline_max,
    )
