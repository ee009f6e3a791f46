"""`FilesService`: the library API. Every HTTP endpoint is one call here, and so is every batch job.

The service owns the order of effects that keeps storage and metadata consistent:

- create: a ``pending`` record (invisible, counted against the owner's quota) -> the bytes
  streamed to storage under a fresh key, counted, limited and validated on the fly -> the
  record committed as ``active``. On any failure the bytes and the record are removed; a crash
  between the steps leaves only a pending record, which the sweeper removes with its bytes.
- delete: refused while a batch holds the file -> the record turns ``deleting`` (clients see
  404 at once) -> the bytes are removed -> the record is removed (or, with soft delete, kept
  as ``deleted``). If removing the bytes fails, the ``deleting`` record stays behind and the
  sweeper retries, so nothing is forgotten.
- expiry: a file is invisible from the second its ``expires_at`` is reached, unless a batch
  holds it; the sweeper removes expired files in bounded batches.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import AsyncIterable, AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from types import TracebackType
from typing import Self

import anyio

from .errors import BlobNotFound, FileNotFound, InvalidRequest, UnsupportedFileType
from .events import EventHook, FileEvent, FileEventKind, emit
from .ids import new_file_id, new_storage_key, parse_file_id
from .metadata.base import FileRecord, MetadataStore, OffsetPaging, Order, StatusUpdates
from .models import FileDeleted, FileList, FileObject
from .policy import EXPIRES_AFTER_MAX, EXPIRES_AFTER_MIN, PURPOSE_PATTERN, Policy
from .storage.base import PresignedURLs, Storage
from .sweeper import SweepReport, run_sweeper, sweep, sweep_orphans
from ._pending_upload import IDEMPOTENCY_WINDOW, PendingUpload
from .uploads import Uploads
from .validation import JSONLValidator

__all__ = ["FileContent", "FileStat", "FilesService", "PendingUpload"]

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


@dataclass(frozen=True)
class FileStat:
    """What a download needs to know before it reads a byte: the file, its strong ``etag``
    (quoted, as the ETag header carries it), the media type to serve and when it was
    last modified (its creation: files never change)."""

    file: FileObject
    etag: str
    media_type: str
    last_modified: int

    @property
    def size(self) -> int:
        return self.file.bytes


class FilesService:
    """Files by owner over one `Storage` and one `MetadataStore`, under one `Policy`.

    ``clock`` returns the current Unix time in seconds (``time.time`` by default); tests pass a
    controllable one. ``events`` are called after files are created, deleted or expired. The
    service owns both backends: `aclose` (or leaving ``async with``) closes them.
    """

    def __init__(
        self,
        storage: Storage,
        metadata: MetadataStore,
        *,
        policy: Policy | None = None,
        clock: Clock = time.time,
        events: Sequence[EventHook] = (),
    ) -> None:
        self.storage = storage
        self.metadata = metadata
        self.policy = policy or Policy()
        if self.policy.list_offset and not isinstance(metadata, OffsetPaging):
            raise ValueError(f"Policy(list_offset=True) needs an OffsetPaging store; {metadata!r}")
        if self.policy.validation == "deferred" and not isinstance(metadata, StatusUpdates):
            raise ValueError(
                f'Policy(validation="deferred") needs a StatusUpdates store; {metadata!r}'
            )
        self.clock = clock
        self.events = tuple(events)

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
        idempotency_key: str | None = None,
        system: bool = False,
    ) -> FileObject:
        """Store a new file from ``file`` (bytes or an async iterable of chunks) and return it.

        ``expires_after`` is seconds after creation (3600..2592000); without it the policy's
        default expiry for the purpose applies. ``system=True`` also allows the purposes only
        the service creates (``batch_output``, ...). With ``idempotency_key``, a file created
        under the same key within 24 hours is returned instead of a new one.
        """
        self.check_expires_after(expires_after)
        upload = await self.begin_upload(
            owner, filename=filename, media_type=media_type, purpose=purpose, system=system
        )
        async with upload:
            await upload.write(_as_chunks(file))
            return await upload.finish(
                purpose=purpose, expires_after=expires_after, idempotency_key=idempotency_key
            )

    async def begin_upload(
        self,
        owner: str,
        *,
        filename: str,
        media_type: str | None = None,
        purpose: str | None = None,
        system: bool = False,
        max_size: int | None = None,
    ) -> PendingUpload:
        """Start an upload; ``purpose`` may be left for `PendingUpload.finish` when it is not
        known until the bytes have arrived (clients may send the ``purpose`` field last).

        Use the result as an async context manager: leaving it without `PendingUpload.finish`
        (or with an exception) removes everything the upload wrote.
        """
        self.check_filename(filename)
        if purpose is not None:
            self.check_purpose(purpose, system=system)
            self.check_file_type(purpose, filename, media_type)
        created_us = int(self.clock() * 1_000_000)
        record = FileRecord(
            id=new_file_id(created_us, self.policy.file_id_format),
            owner=_checked_owner(owner),
            purpose=purpose or "",
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
            changed_at=created_us // 1_000_000,
        )
        await self.metadata.insert(record, quota=self.policy.quota)
        return PendingUpload(self, record, purpose=purpose, system=system, max_size=max_size)

    def check_purpose(self, purpose: str, *, system: bool = False) -> None:
        """`InvalidRequest` unless files with ``purpose`` may be created (by the service itself
        with ``system``, which also allows the system purposes)."""
        allowed = self.policy.upload_purposes
        if allowed is None:
            if not re.fullmatch(PURPOSE_PATTERN, purpose):
                raise InvalidRequest(
                    f"{purpose[:100]!r} is not a valid purpose: use 1 to 64 letters, digits, "
                    "'_', '-', '.' or ':', starting with a letter or digit.",
                    param="purpose",
                )
            return
        if system:
            allowed += self.policy.system_purposes
        if purpose not in allowed:
            listed = ", ".join(repr(p) for p in allowed)
            raise InvalidRequest(
                f"{purpose!r} is not one of [{listed}] - 'purpose'", param="purpose"
            )

    def check_expires_after(self, seconds: int | None) -> None:
        """`InvalidRequest` unless ``seconds`` is None or within OpenAI's range."""
        if seconds is not None and not EXPIRES_AFTER_MIN <= seconds <= EXPIRES_AFTER_MAX:
            raise InvalidRequest(
                f"expires_after[seconds] must be between {EXPIRES_AFTER_MIN} and "
                f"{EXPIRES_AFTER_MAX}; got {seconds}.",
                param="expires_after[seconds]",
            )

    def check_filename(self, filename: str, *, param: str = "file") -> None:
        """`InvalidRequest` for an empty or over-long filename or one with control characters."""
        if not filename:
            raise InvalidRequest("The file must have a filename.", param=param)
        if len(filename) > self.policy.max_filename_length:
            raise InvalidRequest(
                f"The filename is {len(filename)} characters long; the maximum is "
                f"{self.policy.max_filename_length}.",
                param=param,
            )
        if any(ord(char) < 32 or ord(char) == 127 for char in filename):
            raise InvalidRequest(
                "The filename contains control characters (such as NUL, CR or LF); "
                "rename the file.",
                param=param,
            )

    def check_file_type(
        self, purpose: str, filename: str, media_type: str | None, *, param: str = "file"
    ) -> None:
        """`UnsupportedFileType` unless the policy accepts this kind of file for ``purpose``."""
        types = self.policy.file_types.get(purpose)
        if types is not None and not types.allows(filename, media_type):
            raise UnsupportedFileType(
                f"Files with purpose {purpose!r} must be {types.describe()}; "
                f"got {filename[:200]!r}.",
                param=param,
            )

    # -- read -------------------------------------------------------------------------------

    async def retrieve(self, owner: str, file_id: str) -> FileObject:
        """The file, or `FileNotFound` (missing, deleted, expired or another owner's). With
        soft delete, a deleted file is returned with status ``deleted``."""
        record = await self.metadata.get(
            _checked_owner(owner),
            file_id,
            now=self.now(),
            include_deleted=self.policy.soft_delete,
        )
        if record is None:
            raise FileNotFound(file_id)
        return self.file_object(record)

    async def list(
        self,
        owner: str,
        *,
        purpose: str | None = None,
        limit: int | None = None,
        order: str = "desc",
        after: str | None = None,
        offset: int | None = None,
    ) -> FileList:
        """A page of the owner's files in ``order`` of creation, starting after the id ``after``.

        ``after`` need not name an existing file: ids carry their creation time, so a cursor
        stays valid when its file is deleted between two pages. Under `Policy.list_offset`,
        ``offset`` skips that many files instead (not with ``after``) and the page carries the
        ``total`` number of files.
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
        self._check_offset(offset, after)
        owner, now = _checked_owner(owner), self.now()
        total = None
        if self.policy.list_offset:
            total = await self._offset_paging.count(owner, now=now, purpose=purpose)
        if offset:
            records = await self._offset_paging.list_at(
                owner, now=now, purpose=purpose, offset=offset, limit=page_size + 1, order=direction
            )
        else:
            records = await self.metadata.list(
                owner, now=now, purpose=purpose, after=cursor, limit=page_size + 1, order=direction
            )
        data = [self.file_object(record) for record in records[:page_size]]
        return FileList(
            data=data,
            first_id=data[0].id if data else None,
            last_id=data[-1].id if data else None,
            has_more=len(records) > page_size,
            total=total,
        )

    def _check_offset(self, offset: int | None, after: str | None) -> None:
        """`InvalidRequest` for an ``offset`` the policy does not take, or cannot be used."""
        if offset is None:
            return
        if not self.policy.list_offset:
            raise InvalidRequest(
                "offset is not accepted here: page with after=<file id>.", param="offset"
            )
        if after is not None:
            raise InvalidRequest("Give after or offset, not both.", param="offset")
        if offset < 0:
            raise InvalidRequest(f"offset must be 0 or more; got {offset}.", param="offset")

    @property
    def _offset_paging(self) -> OffsetPaging:
        """The metadata store, to page by offset and count (`Policy.list_offset`)."""
        assert isinstance(self.metadata, OffsetPaging)  # checked when the service was made
        return self.metadata

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
            file=self.file_object(record),
            sha256=record.sha256,
            media_type=record.media_type,
            start=first,
            end=stop,
            chunks=chunks,
        )

    async def stat(self, owner: str, file_id: str) -> FileStat:
        """The file's download metadata; `FileNotFound` as for `content`."""
        record = await self._visible(owner, file_id)
        return FileStat(
            file=self.file_object(record),
            etag=f'"{record.etag or record.sha256 or record.id}"',
            media_type=self.policy.download_media_type(record.filename, record.media_type),
            last_modified=record.created_at,
        )

    async def download_url(self, owner: str, file_id: str, *, expires_in: int) -> str | None:
        """A short-lived URL from which the file's bytes can be fetched directly, or None when
        the storage cannot sign URLs (see `PresignedURLs`). `FileNotFound` as for `content`."""
        record = await self._visible(owner, file_id)
        if not isinstance(self.storage, PresignedURLs):
            return None
        return await self.storage.presigned_url(record.storage_key, expires_in=expires_in)

    async def idempotent_file(self, owner: str, key: str) -> FileObject | None:
        """The file the owner created with ``Idempotency-Key: key`` within 24 hours, if it is
        still visible (once it expired or was deleted, the key starts a new file)."""
        since = self.now() - IDEMPOTENCY_WINDOW
        file_id = await self.metadata.idempotent_file(_checked_owner(owner), key, since=since)
        if file_id is None:
            return None
        try:
            return await self.retrieve(owner, file_id)
        except FileNotFound:
            return None

    @property
    def uploads(self) -> Uploads:
        """The Uploads API: large files sent in parts."""
        return Uploads(self)

    # -- delete and hold ---------------------------------------------------------------------

    async def delete(self, owner: str, file_id: str) -> FileDeleted:
        """Delete the file: gone for clients at once, its bytes removed right after.

        `Conflict` while a batch holds the file; `FileNotFound` if it is not visible.
        """
        record = await self.metadata.begin_delete(_checked_owner(owner), file_id, now=self.now())
        if record is None:
            raise FileNotFound(file_id)
        with anyio.CancelScope(shield=True):
            await self.purge(record, keep_record=self.policy.soft_delete)
        await self.emit("deleted", owner, self.file_object(record))
        return FileDeleted(id=file_id, deleted=True)

    async def validate(self, owner: str, file_id: str) -> FileObject:
        """Check a file stored ``uploaded`` under ``Policy(validation="deferred")`` against its
        purpose's JSONL rules, record ``processed`` or ``error`` (with the first bad line in
        ``status_details``), and return it. A file that is not waiting for the check is
        returned as it is. A batch worker calls this when a batch first uses the file (after
        `hold`, so that it cannot go meanwhile)."""
        record = await self._visible(owner, file_id)
        rules = self.policy.jsonl_rules.get(record.purpose)
        if record.status != "uploaded" or rules is None:
            return self.file_object(record)
        validator = JSONLValidator(rules)
        content = await self.content(owner, file_id)
        try:
            async for chunk in content.chunks:
                validator.feed(chunk)
        finally:
            await content.aclose()
        result = validator.finish()
        assert isinstance(self.metadata, StatusUpdates)  # checked when the service was made
        checked = await self.metadata.set_status(
            record.owner,
            file_id,
            status="processed" if result.ok else "error",
            details=None if result.ok else result.message,
            now=self.now(),
        )
        if checked is None:
            raise FileNotFound(file_id)
        return self.file_object(checked)

    async def hold(self, owner: str, file_id: str, holder: str) -> None:
        """Hold the file for ``holder`` (a batch id, say): until released it cannot be deleted
        (409) and does not expire. Holding twice for one holder is one hold."""
        if not await self.metadata.hold(_checked_owner(owner), file_id, holder, now=self.now()):
            raise FileNotFound(file_id)

    async def release(self, owner: str, file_id: str, holder: str) -> bool:
        """Drop ``holder``'s hold; False if it held nothing. A released file past its expiry
        is gone at once."""
        return await self.metadata.release(_checked_owner(owner), file_id, holder)

    @asynccontextmanager
    async def holding(self, owner: str, file_id: str, holder: str) -> AsyncIterator[FileObject]:
        """Hold the file for the duration of the block, and release it however the block ends."""
        await self.hold(owner, file_id, holder)
        try:
            yield await self.retrieve(owner, file_id)
        finally:
            with anyio.CancelScope(shield=True):
                await self.release(owner, file_id, holder)

    async def purge(self, record: FileRecord, *, keep_record: bool = False) -> bool:
        """Remove a record's bytes, then the record (or keep it as ``deleted``); True if done.

        If the bytes cannot be removed the record stays (``pending`` or ``deleting``, invisible
        to clients) as the reminder for the sweeper, so no bytes are ever forgotten.
        """
        try:
            await self.storage.delete(record.storage_key)
        except Exception:
            log.warning("removing the bytes of %s failed; the sweeper will retry", record.id)
            return False
        try:
            await self.metadata.remove(record.owner, record.id, keep_record=keep_record)
        except Exception:
            log.warning("removing the record of %s failed; the sweeper will retry", record.id)
            return False
        return True

    # -- sweeping -----------------------------------------------------------------------------

    async def sweep(self, *, batch: int = 100, stale_after: int = 3600) -> SweepReport:
        """Remove expired files and what dead uploads and failed deletes left, now.

        For hosts that schedule their own jobs; safe to run on several replicas at once.
        ``stale_after`` is how long an upload or a delete may take before it counts as dead.
        """
        return await sweep(self, batch=batch, stale_after=stale_after)

    async def sweep_orphans(self, *, grace: int = 24 * 3600) -> int:
        """Remove stored bytes no record knows, older than ``grace`` seconds."""
        return await sweep_orphans(self, grace=grace)

    async def run_sweeper(
        self, *, interval: float, stale_after: int = 3600, stop: anyio.Event | None = None
    ) -> None:
        """Sweep every ``interval`` seconds until cancelled (run it in a task)."""
        await run_sweeper(self, interval=interval, stale_after=stale_after, stop=stop)

    # -- helpers -----------------------------------------------------------------------------

    def now(self) -> int:
        """The current time in whole Unix seconds, by this service's clock."""
        return int(self.clock())

    async def emit(self, kind: FileEventKind, owner: str, file: FileObject) -> None:
        """Tell the event hooks that ``kind`` happened to ``file``."""
        if self.events:
            await emit(self.events, FileEvent(kind=kind, owner=owner, file=file, at=self.now()))

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

    @staticmethod
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
