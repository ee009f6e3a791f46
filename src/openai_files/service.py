"""`FilesService`: the library API. Every HTTP endpoint is one call here, and so is every batch job.

The service owns the order of effects that keeps storage and metadata consistent:

- create: a ``pending`` record (invisible) -> the bytes streamed to storage under a fresh key,
  counted and limited on the fly -> the record committed as ``active``. On any failure the
  bytes and the record are removed; a crash between the steps leaves only a pending record
  and its key, never a visible record without bytes.
- delete: the record turns ``deleting`` (clients see 404 at once) -> the bytes are removed ->
  the record is removed. If removing the bytes fails, the ``deleting`` record stays behind as
  the reminder to retry, so nothing is forgotten.
- expiry: a file is invisible from the second its ``expires_at`` is reached.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterable, AsyncIterator, Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Self

import anyio

from .errors import BlobNotFound, Conflict, FileNotFound, FileTooLarge, InvalidRequest
from .ids import new_file_id, new_storage_key, parse_file_id
from .metadata.base import FileRecord, MetadataStore, Order
from .models import FileDeleted, FileList, FileObject
from .policy import EXPIRES_AFTER_MAX, EXPIRES_AFTER_MIN, Policy
from .storage.base import PresignedURLs, Storage, StoredBlob

__all__ = ["FileContent", "FilesService", "PendingUpload"]

log = logging.getLogger("openai_files")

Clock = Callable[[], float]


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


class FilesService:
    """Files by owner over one `Storage` and one `MetadataStore`.

    ``clock`` returns the current Unix time in seconds (``time.time`` by default); tests pass a
    controllable one. The service owns both backends: `aclose` (or leaving ``async with``)
    closes them.
    """

    def __init__(
        self,
        storage: Storage,
        metadata: MetadataStore,
        *,
        policy: Policy | None = None,
        clock: Clock = time.time,
    ) -> None:
        self.storage = storage
        self.metadata = metadata
        self.policy = policy or Policy()
        self.clock = clock

    def __repr__(self) -> str:
        return f"FilesService(storage={self.storage!r}, metadata={self.metadata!r})"

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close storage and the metadata store."""
        try:
            await self.storage.aclose()
        finally:
            await self.metadata.aclose()

    # -- create ----------------------------------------------------------------------------

    async def create(
        self,
        owner: str,
        *,
        file: AsyncIterable[bytes] | bytes,
        filename: str,
        purpose: str,
        expires_after: int | None = None,
        media_type: str | None = None,
    ) -> FileObject:
        """Store a new file from ``file`` (bytes or an async iterable of chunks) and return it.

        ``expires_after`` is seconds after creation (3600..2592000); without it the policy's
        default expiry for the purpose applies.
        """
        self.check_purpose(purpose)
        self.check_expires_after(expires_after)
        upload = await self.begin_upload(owner, filename=filename, media_type=media_type)
        async with upload:
            await upload.write(_as_chunks(file))
            return await upload.finish(purpose=purpose, expires_after=expires_after)

    async def begin_upload(
        self, owner: str, *, filename: str, media_type: str | None = None
    ) -> PendingUpload:
        """Start an upload whose purpose may not be known until its bytes have arrived.

        The HTTP edge uses this because clients may send the ``purpose`` field after the file.
        Use the result as an async context manager: leaving it without `PendingUpload.finish`
        (or with an exception) removes everything the upload wrote.
        """
        self.check_filename(filename)
        created_us = int(self.clock() * 1_000_000)
        record = FileRecord(
            id=new_file_id(created_us),
            owner=_checked_owner(owner),
            purpose="",
            filename=filename,
            bytes=0,
            created_us=created_us,
            expires_at=None,
            status="uploaded",
            status_details=None,
            storage_key=new_storage_key(),
            sha256=None,
            media_type=media_type,
            state="pending",
        )
        await self.metadata.insert(record)
        return PendingUpload(self, record)

    def check_purpose(self, purpose: str) -> None:
        """`InvalidRequest` unless clients may upload files with ``purpose``."""
        if purpose not in self.policy.upload_purposes:
            allowed = ", ".join(repr(p) for p in self.policy.upload_purposes)
            raise InvalidRequest(
                f"{purpose!r} is not one of [{allowed}] - 'purpose'", param="purpose"
            )

    def check_expires_after(self, seconds: int | None) -> None:
        """`InvalidRequest` unless ``seconds`` is None or within OpenAI's range."""
        if seconds is not None and not EXPIRES_AFTER_MIN <= seconds <= EXPIRES_AFTER_MAX:
            raise InvalidRequest(
                f"expires_after[seconds] must be between {EXPIRES_AFTER_MIN} and "
                f"{EXPIRES_AFTER_MAX}; got {seconds}.",
                param="expires_after[seconds]",
            )

    def check_filename(self, filename: str) -> None:
        """`InvalidRequest` for an empty or over-long filename or one with control characters."""
        if not filename:
            raise InvalidRequest("The file must have a filename.", param="file")
        if len(filename) > self.policy.max_filename_length:
            raise InvalidRequest(
                f"The filename is {len(filename)} characters long; the maximum is "
                f"{self.policy.max_filename_length}.",
                param="file",
            )
        if any(ord(char) < 32 or ord(char) == 127 for char in filename):
            raise InvalidRequest(
                "The filename contains control characters (such as NUL, CR or LF); "
                "rename the file.",
                param="file",
            )

    # -- read -------------------------------------------------------------------------------

    async def retrieve(self, owner: str, file_id: str) -> FileObject:
        """The file, or `FileNotFound` (missing, deleted, expired or another owner's)."""
        return file_object(await self._visible(owner, file_id))

    async def list(
        self,
        owner: str,
        *,
        purpose: str | None = None,
        limit: int | None = None,
        order: str = "desc",
        after: str | None = None,
    ) -> FileList:
        """A page of the owner's files in ``order`` of creation, starting after the id ``after``.

        ``after`` need not name an existing file: ids carry their creation time, so a cursor
        stays valid when its file is deleted between two pages.
        """
        page_size = self.policy.list_limit_default if limit is None else limit
        if not 1 <= page_size <= self.policy.list_limit_max:
            raise InvalidRequest(
                f"limit must be between 1 and {self.policy.list_limit_max}; got {page_size}.",
                param="limit",
            )
        if order not in ("asc", "desc"):
            raise InvalidRequest(f"order must be 'asc' or 'desc'; got {order!r}.", param="order")
        direction: Order = "asc" if order == "asc" else "desc"
        cursor = None
        if after is not None:
            created_us = parse_file_id(after)
            if created_us is None:
                raise InvalidRequest(
                    f"after must be a file id from a previous page; got {after[:100]!r}.",
                    param="after",
                )
            cursor = (created_us, after)
        records = await self.metadata.list(
            _checked_owner(owner),
            now=self.now(),
            purpose=purpose,
            after=cursor,
            limit=page_size + 1,
            order=direction,
        )
        data = [file_object(record) for record in records[:page_size]]
        return FileList(
            data=data,
            first_id=data[0].id if data else None,
            last_id=data[-1].id if data else None,
            has_more=len(records) > page_size,
        )

    async def content(
        self, owner: str, file_id: str, *, start: int = 0, end: int | None = None
    ) -> FileContent:
        """Open the file's bytes from ``start`` to ``end`` (exclusive; None: to the end)."""
        record = await self._visible(owner, file_id)
        stop = record.bytes if end is None else min(end, record.bytes)
        first = min(max(start, 0), stop)
        try:
            chunks = await self.storage.get(record.storage_key, start=first, end=stop)
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

    async def download_url(self, owner: str, file_id: str, *, expires_in: int) -> str | None:
        """A short-lived URL from which the file's bytes can be fetched directly, or None when
        the storage cannot sign URLs (see `PresignedURLs`). `FileNotFound` as for `content`."""
        record = await self._visible(owner, file_id)
        if not isinstance(self.storage, PresignedURLs):
            return None
        return await self.storage.presigned_url(record.storage_key, expires_in=expires_in)

    # -- delete -----------------------------------------------------------------------------

    async def delete(self, owner: str, file_id: str) -> FileDeleted:
        """Delete the file: gone for clients at once, its bytes removed right after."""
        record = await self.metadata.begin_delete(_checked_owner(owner), file_id, now=self.now())
        if record is None:
            raise FileNotFound(file_id)
        with anyio.CancelScope(shield=True):
            await self._purge(record)
        return FileDeleted(id=file_id, deleted=True)

    async def _purge(self, record: FileRecord) -> None:
        """Remove a record's bytes, then the record.

        If the bytes cannot be removed the record stays (``pending`` or ``deleting``, invisible
        to clients) as the reminder to retry, so no bytes are ever forgotten.
        """
        try:
            await self.storage.delete(record.storage_key)
        except Exception:
            log.warning("removing the bytes of %s failed; it will be retried", record.id)
            return
        await self.metadata.remove(record.owner, record.id)

    # -- helpers -----------------------------------------------------------------------------

    def now(self) -> int:
        """The current time in whole Unix seconds, by this service's clock."""
        return int(self.clock())

    async def _visible(self, owner: str, file_id: str) -> FileRecord:
        record = await self.metadata.get(_checked_owner(owner), file_id, now=self.now())
        if record is None:
            raise FileNotFound(file_id)
        return record

    def expires_at(self, record: FileRecord, purpose: str, expires_after: int | None) -> int | None:
        seconds = expires_after
        if seconds is None:
            seconds = self.policy.default_expiry.get(purpose)
        return None if seconds is None else record.created_at + seconds


class PendingUpload:
    """An upload in progress: `write` its bytes once, then `finish` it with its purpose."""

    def __init__(self, service: FilesService, record: FileRecord) -> None:
        self._service = service
        self.record = record
        self._blob: StoredBlob | None = None
        self._finished = False

    @property
    def file_id(self) -> str:
        return self.record.id

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if not self._finished:
            await self.abort()

    async def write(self, chunks: AsyncIterable[bytes]) -> StoredBlob:
        """Stream the file's bytes to storage, refusing them as soon as they pass the limit."""
        if self._blob is not None:
            raise RuntimeError("an upload's bytes are written once")
        limited = _limited(chunks, self._service.policy.max_file_size)
        self._blob = await self._service.storage.put(self.record.storage_key, limited)
        return self._blob

    async def finish(self, *, purpose: str, expires_after: int | None = None) -> FileObject:
        """Check the purpose and expiry, then make the file visible; `abort` on any error."""
        service = self._service
        service.check_purpose(purpose)
        service.check_expires_after(expires_after)
        if self._blob is None:
            raise InvalidRequest("The upload has no file.", param="file")
        record = self.record.replace(
            purpose=purpose,
            bytes=self._blob.size,
            sha256=self._blob.sha256,
            status="processed",
            expires_at=service.expires_at(self.record, purpose, expires_after),
        )
        if not await service.metadata.commit(record):
            raise Conflict("The upload was abandoned before it completed; upload the file again.")
        self._finished = True
        self.record = record.replace(state="active")
        return file_object(self.record)

    async def abort(self) -> None:
        """Remove whatever this upload stored; safe to call more than once."""
        self._finished = True
        with anyio.CancelScope(shield=True):
            await self._service._purge(self.record)


def file_object(record: FileRecord) -> FileObject:
    """The wire form of a record."""
    return FileObject(
        id=record.id,
        bytes=record.bytes,
        created_at=record.created_at,
        filename=record.filename,
        purpose=record.purpose,
        status=record.status,  # type: ignore[arg-type]
        status_details=record.status_details,
        expires_at=record.expires_at,
    )


def _checked_owner(owner: str) -> str:
    if not owner or len(owner) > 255:
        raise ValueError("owner must be a non-empty string of at most 255 characters")
    return owner


async def _as_chunks(file: AsyncIterable[bytes] | bytes) -> AsyncIterator[bytes]:
    if isinstance(file, bytes | bytearray | memoryview):
        yield bytes(file)
        return
    async for chunk in file:
        yield chunk


async def _limited(chunks: AsyncIterable[bytes], limit: int) -> AsyncIterator[bytes]:
    total = 0
    async for chunk in chunks:
        total += len(chunk)
        if total > limit:
            raise FileTooLarge(limit)
        yield chunk
