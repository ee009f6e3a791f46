"""`FilesService`: the library API. Every HTTP endpoint is one call here, and so is every batch job.

The service owns the order of effects that keeps storage and metadata consistent:

- create: the bytes streamed to storage under a fresh key, counted, limited and validated on
  the fly -> a small file's record inserted ``active`` in one transaction that checks the
  quota and the idempotency key; a larger one's ``pending`` record (invisible, counted against
  the owner's quota) is written once its first ``RECORD_AFTER`` bytes have streamed and
  committed ``active`` at the end. On any failure the bytes and the record are removed; a
  crash between the steps leaves a pending record, which the sweeper removes with its bytes,
  or a small file's bytes that no record knows, which the orphan sweep removes. A file of at
  most ``inline_max`` bytes skips the storage: the metadata store writes its bytes in that
  one transaction, with the record (`InlineFiles`).
- delete: refused while a batch holds the file -> the record turns ``deleting`` (clients see
  404 at once) -> the bytes are removed -> the record is removed (or, with soft delete, kept
  as ``deleted``). If removing the bytes fails, the ``deleting`` record stays behind and the
  sweeper retries, so nothing is forgotten.
- expiry: a file is invisible from the second its ``expires_at`` is reached, unless a batch
  holds it; the sweeper removes expired files in bounded batches.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterable, AsyncIterator, Callable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from types import TracebackType
from typing import Self

import anyio

from ._checks import (
    check_expires_after,
    checked_owner,
)
from ._clock import Clock
from ._core import IDEMPOTENCY_WINDOW, Core, check_id, file_object, found
from ._deferred import validate_stored
from ._downloads import FileContent, FileStat, download_url, open_content, stat
from ._inline import check_inline_max
from ._lifecycle import running
from ._listing import LIST_BATCH, ListedBatches, list_in_batches
from ._pending_upload import PendingUpload, begin_upload
from ._readiness import Readiness, check_backends
from ._usage import USAGE_PAGE_MAX, list_usage, owner_usage
from .errors import FileNotFound
from .events import EventHook
from .inputs import possible_id
from .metadata.base import MetadataStore, OffsetPaging, StatusUpdates
from .models import FileDeleted, FileList, FileObject, OwnerUsage, UsageList
from .policy import Policy
from .storage.base import Storage
from .sweeper import (
    BATCH,
    MAX_BATCHES,
    ORPHAN_GRACE,
    ORPHANS_EVERY,
    STALE_AFTER,
    SweepReport,
    run_sweeper,
    sweep,
    sweep_orphans,
)
from .uploads import Uploads

__all__ = [
    "LIST_BATCH",
    "USAGE_PAGE_MAX",
    "FileContent",
    "FileStat",
    "FilesService",
    "ListedBatches",
    "PendingUpload",
    "Readiness",
]


class FilesService:
    """Files by owner over one `Storage` and one `MetadataStore`, under one `Policy`.

    ``clock`` returns the current Unix time in seconds (``time.time`` by default); tests pass a
    `ManualClock`. ``events`` are called after files are created, deleted or expired. The
    service owns both backends: `aclose` (or leaving ``async with``) closes them.

    ``inline_max`` (0, the default: none) is the size in bytes of the largest file whose bytes
    the metadata store keeps itself, in the transaction that inserts its record, instead of
    storage (it must offer `InlineFiles`; at most `RECORD_AFTER`). Such a file is durable with
    that one commit, without a flush of a file of its own: much cheaper for small uploads.
    Its bytes are then in the database (and its backups), not in storage, so an encrypting
    storage (`EncryptedStorage`) refuses it: `ValueError`.
    """

    def __init__(
        self,
        storage: Storage,
        metadata: MetadataStore,
        *,
        policy: Policy | None = None,
        clock: Clock = time.time,
        events: Sequence[EventHook] = (),
        inline_max: int = 0,
    ) -> None:
        policy = policy or Policy()
        check_inline_max(inline_max, storage, metadata)
        if policy.list_offset and not isinstance(metadata, OffsetPaging):
            raise ValueError(f"Policy(list_offset=True) needs an OffsetPaging store; {metadata!r}")
        if policy.validation == "deferred" and not isinstance(metadata, StatusUpdates):
            raise ValueError(
                f'Policy(validation="deferred") needs a StatusUpdates store; {metadata!r}'
            )
        self._core = Core(storage, metadata, policy, clock, tuple(events), inline_max)
        self._uploads = Uploads(self._core)

    @property
    def storage(self) -> Storage:
        """Where the files' bytes are."""
        return self._core.storage

    @property
    def metadata(self) -> MetadataStore:
        """Where the files' records are."""
        return self._core.metadata

    @property
    def policy(self) -> Policy:
        """The rules the service applies."""
        return self._core.policy

    @property
    def inline_max(self) -> int:
        """The largest file whose bytes the metadata store keeps (0: none)."""
        return self._core.inline_max

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

    def running(
        self,
        *,
        sweep_interval: float | None = 60.0,
        stale_after: int = STALE_AFTER,
        close: bool = True,
    ) -> AbstractAsyncContextManager[FilesService]:
        """The service's lifecycle for a host's lifespan: ``async with service.running():``
        runs the sweeper every ``sweep_interval`` seconds (None: no sweeper; ``stale_after`` as
        in `sweep`) while the block runs, then lets a sweep in progress finish and, unless
        ``close`` is False, closes the service. A host that mounts `create_app` (whose own
        lifespan Starlette does not run) wraps its lifespan's ``yield`` in it."""
        return running(self, sweep_interval=sweep_interval, stale_after=stale_after, close=close)

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
        check_expires_after(expires_after)
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
        bytes_counted: bool = False,
    ) -> PendingUpload:
        """Start an upload; ``purpose`` may be left for `PendingUpload.finish` when it is not
        known until the bytes have arrived (clients may send the ``purpose`` field last).
        ``bytes_counted``: its bytes count against the owner's byte quota already (the parts
        of an upload of the Uploads API), so they are not reserved again while they stream.

        Nothing is recorded yet: a file past ``RECORD_AFTER`` bytes gets its ``pending``
        record (and its quota checked) while it streams, a smaller one is recorded by
        `PendingUpload.finish`, in one transaction. Use the result as an async context
        manager: leaving it without `PendingUpload.finish` (or with an exception) removes
        everything the upload wrote.
        """
        return await begin_upload(
            self._core,
            owner,
            filename=filename,
            media_type=media_type,
            purpose=purpose,
            system=system,
            max_size=max_size,
            bytes_counted=bytes_counted,
        )

    # -- read -------------------------------------------------------------------------------

    async def retrieve(self, owner: str, file_id: str) -> FileObject:
        """The file, or `FileNotFound` (missing, deleted, expired or another owner's). With
        soft delete, a deleted file is returned with status ``deleted``."""
        return await self._core.retrieve(owner, file_id)

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
        pages = await self.list_in_batches(
            owner,
            purpose=purpose,
            limit=limit,
            order=order,
            after=after,
            offset=offset,
            batch=self.policy.list_limit_max,  # the whole page in one query
        )
        return await pages.page()

    async def list_in_batches(
        self,
        owner: str,
        *,
        purpose: str | None = None,
        limit: int | None = None,
        order: str = "desc",
        after: str | None = None,
        offset: int | None = None,
        batch: int = LIST_BATCH,
    ) -> ListedBatches:
        """The page `list` returns, fetched from the store ``batch`` files at a time as it is
        read, so that a page of 10,000 files with long names never sits in memory whole.

        The parameters are checked and the first batch fetched before this returns, so a bad
        request or an unreachable store fails here, not midway through the page.
        """
        return await list_in_batches(
            self._core,
            owner,
            purpose=purpose,
            limit=limit,
            order=order,
            after=after,
            offset=offset,
            batch=batch,
        )

    async def content(
        self,
        owner: str,
        file_id: str,
        *,
        start: int = 0,
        end: int | None = None,
        stat: FileStat | None = None,
    ) -> FileContent:
        """Open the file's bytes from ``start`` to ``end`` (exclusive; None: to the end).

        ``stat``: the file's `FileStat`, just returned by `stat` for this owner, whose record
        is then not read again (a download answers conditional and range requests from its
        stat before it opens the bytes). A file deleted in between is still served if its
        bytes are not yet removed, as it would be had the delete come a moment later."""
        return await open_content(self._core, owner, file_id, start=start, end=end, stat=stat)

    async def stat(self, owner: str, file_id: str) -> FileStat:
        """The file's download metadata; `FileNotFound` as for `content`."""
        return await stat(self._core, owner, file_id)

    async def download_url(self, owner: str, file_id: str, *, expires_in: int) -> str | None:
        """A short-lived URL from which the file's bytes can be fetched directly, or None when
        the storage cannot sign URLs (see `PresignedURLs`). `FileNotFound` as for `content`."""
        return await download_url(self._core, owner, file_id, expires_in=expires_in)

    async def idempotent_file(self, owner: str, key: str) -> FileObject | None:
        """The file the owner created with ``Idempotency-Key: key`` within 24 hours, if it is
        still visible (once it expired or was deleted, the key starts a new file)."""
        since = self._core.now() - IDEMPOTENCY_WINDOW
        file_id = await self.metadata.idempotent_file(checked_owner(owner), key, since=since)
        if file_id is None:
            return None
        try:
            return await self.retrieve(owner, file_id)
        except FileNotFound:
            return None

    @property
    def uploads(self) -> Uploads:
        """The Uploads API: large files sent in parts (one `Uploads` per service)."""
        return self._uploads

    # -- delete and hold ---------------------------------------------------------------------

    async def delete(self, owner: str, file_id: str) -> FileDeleted:
        """Delete the file: gone for clients at once, its bytes removed right after.

        `Conflict` while a batch holds the file; `FileNotFound` if it is not visible.
        """
        check_id(file_id)
        core = self._core
        begun = await self.metadata.begin_delete(checked_owner(owner), file_id, now=core.now())
        record = found(file_id, begun)
        with anyio.CancelScope(shield=True):
            await core.purge(record, keep_record=self.policy.soft_delete)
        await core.emit("deleted", owner, file_object(record))
        return FileDeleted(id=file_id, deleted=True)

    async def validate(self, owner: str, file_id: str) -> FileObject:
        """Check a file stored ``uploaded`` under ``Policy(validation="deferred")`` against its
        purpose's JSONL rules, record ``processed`` or ``error`` (with the first bad line in
        ``status_details``), and return it. A file that is not waiting for the check is
        returned as it is. A batch worker calls this when a batch first uses the file (after
        `hold`, so that it cannot go meanwhile)."""
        return await validate_stored(self._core, owner, file_id)

    async def hold(self, owner: str, file_id: str, holder: str) -> None:
        """Hold the file for ``holder`` (a batch id, say): until released it cannot be deleted
        (409) and does not expire. Holding twice for one holder is one hold."""
        now = self._core.now()
        if not possible_id(file_id) or not await self.metadata.hold(
            checked_owner(owner), file_id, holder, now=now
        ):
            raise FileNotFound(file_id)

    async def release(self, owner: str, file_id: str, holder: str) -> bool:
        """Drop ``holder``'s hold; False if it held nothing. A released file past its expiry
        is gone at once."""
        if not possible_id(file_id):
            return False
        return await self.metadata.release(checked_owner(owner), file_id, holder)

    @asynccontextmanager
    async def holding(self, owner: str, file_id: str, holder: str) -> AsyncIterator[FileObject]:
        """Hold the file for the duration of the block, and release it however the block ends."""
        await self.hold(owner, file_id, holder)
        try:
            yield await self.retrieve(owner, file_id)
        finally:
            with anyio.CancelScope(shield=True):
                await self.release(owner, file_id, holder)

    # -- operations ------------------------------------------------------------------------

    async def check(self, *, within: float = 2.0, write: bool = False) -> Readiness:
        """Whether both backends answer a cheap probe within ``within`` seconds each (a
        readiness probe's question); with ``write``, storage must also take and remove a small
        object (a start-up check: it also finds a missing bucket or a read-only directory).
        Never raises for a backend's failure: the `Readiness` says which failed and why."""
        return await check_backends(self.storage, self.metadata, within=within, write=write)

    async def usage(self, owner: str) -> OwnerUsage:
        """What ``owner`` stores now: files, bytes and open uploads (for billing, support)."""
        return await owner_usage(self.metadata, owner)

    async def list_usage(self, *, after: str | None = None, limit: int = 100) -> UsageList:
        """A page of every owner's usage, by owner, starting after the owner ``after``: the
        owners who store something. ``limit``: 1 to `USAGE_PAGE_MAX`. `TypeError` for a
        metadata store that is no `UsageListing` (the built-in stores all are)."""
        return await list_usage(self.metadata, after=after, limit=limit)

    # -- sweeping -----------------------------------------------------------------------------

    async def sweep(
        self, *, batch: int = BATCH, stale_after: int = STALE_AFTER, max_batches: int = MAX_BATCHES
    ) -> SweepReport:
        """Remove expired files and what dead uploads and failed deletes left, now.

        For hosts that schedule their own jobs; safe to run on several replicas at once.
        Records are claimed ``batch`` at a time, at most ``max_batches`` times. ``stale_after``
        is how long an upload or a delete may take before it counts as dead.
        """
        return await sweep(
            self._core,
            self._uploads,
            batch=batch,
            stale_after=stale_after,
            max_batches=max_batches,
        )

    async def sweep_orphans(self, *, grace: int = ORPHAN_GRACE) -> int:
        """Remove stored bytes no record knows, older than ``grace`` seconds."""
        return await sweep_orphans(self._core, grace=grace)

    async def run_sweeper(
        self,
        *,
        interval: float,
        batch: int = BATCH,
        stale_after: int = STALE_AFTER,
        max_batches: int = MAX_BATCHES,
        orphan_grace: int = ORPHAN_GRACE,
        orphans_every: int = ORPHANS_EVERY,
        stop: anyio.Event | None = None,
        on_sweep: Callable[[SweepReport | None], None] | None = None,
    ) -> None:
        """Sweep every ``interval`` seconds until ``stop`` is set or the task is cancelled (run
        it in a task): each sweep as `sweep` with ``batch``, ``stale_after`` and
        ``max_batches``, and every ``orphans_every`` sweeps (the first included) as
        `sweep_orphans` with ``grace=orphan_grace``. Setting ``stop`` lets a sweep in progress
        finish. ``on_sweep`` is called after each sweep with its report (None for one that
        failed), for metrics."""
        await run_sweeper(
            self._core,
            self._uploads,
            interval=interval,
            batch=batch,
            stale_after=stale_after,
            max_batches=max_batches,
            orphan_grace=orphan_grace,
            orphans_every=orphans_every,
            stop=stop,
            on_sweep=on_sweep,
        )


async def _as_chunks(file: AsyncIterable[bytes] | bytes) -> AsyncIterator[bytes]:
    if isinstance(file, bytes | bytearray | memoryview):
        yield bytes(file)
        return
    async for chunk in file:
        yield chunk
