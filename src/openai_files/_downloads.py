"""Reading a file back: its bytes (`FileContent`), what a download needs to know before
reading them (`FileStat`), and a signed URL where the storage can make one (not for a file
whose bytes the metadata store keeps)."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from ._core import Core, file_object
from .errors import BlobNotFound, FileNotFound
from .ids import is_inline
from .metadata.base import FileRecord
from .models import FileObject
from .storage.base import PresignedURLs

__all__ = ["FileContent", "FileStat", "download_url", "open_content", "stat"]

log = logging.getLogger("openai_files")


@dataclass(frozen=True)
class FileContent:
    """An open download: the file, the byte range being served and the stream of its bytes.

    ``start``/``end`` are the served range (``end`` exclusive). Iterate ``chunks`` exactly once,
    or call `aclose`.
    """

    file: FileObject
    sha256: str | None
    media_type: str | None
    start: int
    end: int
    chunks: AsyncIterator[bytes]

    @property
    def length(self) -> int:
        return self.end - self.start

    async def aclose(self) -> None:
        closer = getattr(self.chunks, "aclose", None)
        if closer is not None:
            await closer()


@dataclass(frozen=True)
class FileStat:
    """What a download needs to know before it reads a byte: the file, its strong ``etag``
    (quoted, as the ETag header carries it), the media type to serve and when it was
    last modified (its creation: files never change)."""

    file: FileObject
    etag: str
    media_type: str
    last_modified: int
    _record: FileRecord | None = field(default=None, repr=False, compare=False)
    """The record read, so that `FilesService.content` given this stat need not read it again."""
    _kept: bytes | None = field(default=None, repr=False, compare=False)
    """The file's bytes, read with the record where the metadata store keeps them."""

    @property
    def size(self) -> int:
        return self.file.bytes


async def open_content(
    core: Core,
    owner: str,
    file_id: str,
    *,
    start: int = 0,
    end: int | None = None,
    stat: FileStat | None = None,
) -> FileContent:
    """Open the file's bytes from ``start`` to ``end`` (see `FilesService.content`)."""
    record, kept = (None, None) if stat is None else (stat._record, stat._kept)
    if record is None or (record.owner, record.id) != (owner, file_id):
        record, kept = await core.visible_with_bytes(owner, file_id)
    stop = record.bytes if end is None else min(end, record.bytes)
    first = min(max(start, 0), stop)
    try:
        chunks = await core.read_bytes(record.storage_key, start=first, end=stop, kept=kept)
    except BlobNotFound:
        log.error("file %s is listed but its bytes are missing from storage", file_id)
        raise FileNotFound(file_id) from None
    return FileContent(
        file=file_object(record),
        sha256=record.sha256,
        media_type=record.media_type,
        start=first,
        end=stop,
        chunks=chunks,
    )


async def stat(core: Core, owner: str, file_id: str) -> FileStat:
    """The file's download metadata (see `FilesService.stat`)."""
    record, kept = await core.visible_with_bytes(owner, file_id)
    return FileStat(
        file=file_object(record),
        etag=f'"{record.etag or record.sha256 or record.id}"',
        media_type=core.policy.download_media_type(record.filename, record.media_type),
        last_modified=record.created_at,
        _record=record,
        _kept=kept,
    )


async def download_url(core: Core, owner: str, file_id: str, *, expires_in: int) -> str | None:
    """A signed URL for the file's bytes, or None (see `FilesService.download_url`)."""
    record = await core.visible(owner, file_id)
    if not isinstance(core.storage, PresignedURLs) or is_inline(record.storage_key):
        return None  # served by the service itself
    return await core.storage.presigned_url(record.storage_key, expires_in=expires_in)
