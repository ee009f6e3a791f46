"""The metadata-store protocol and its optional capabilities; the records it stores and the
quota it enforces (defined in `._records`)."""

from __future__ import annotations

import builtins
from typing import Protocol, runtime_checkable

from ._records import (
    OPEN_UPLOAD_STATES,
    Cursor,
    FileRecord,
    Order,
    PartOutcome,
    PartRecord,
    Quota,
    RecordState,
    UploadRecord,
    UploadState,
    Usage,
)

__all__ = [
    "DEFAULT_TABLE_PREFIX",
    "OPEN_UPLOAD_STATES",
    "Cursor",
    "FileRecord",
    "InlineFiles",
    "MetadataStore",
    "OffsetPaging",
    "Order",
    "PartBatches",
    "PartOutcome",
    "PartRecord",
    "Quota",
    "RecordState",
    "StatusUpdates",
    "UploadRecord",
    "UploadState",
    "Usage",
    "UsageListing",
]

DEFAULT_TABLE_PREFIX = "openai_files_"
"""The prefix of the SQL store's table names unless another is configured."""


@runtime_checkable
class MetadataStore(Protocol):
    """File records by owner and id.

    Every read and write takes the owner; a record of another owner behaves exactly like a
    missing one. Owners, ids, holders, purposes and idempotency keys are compared exactly:
    values that differ by case, accents, trailing spaces or Unicode normalization are different
    values. "Visible" is `FileRecord.visible_at`. Listing order is ``(created_us, id)``,
    ascending or descending, which is total, so keyset pagination neither skips nor repeats a
    record. Every operation is atomic, also across processes sharing one database, and keeps
    each owner's `Usage` equal to the count and total bytes of their ``pending`` and
    ``active`` records, plus the ``reserved`` bytes of their uploads, and to the count of
    their open uploads. Errors are the library's: `Conflict` for a duplicate id or a held file,
    `QuotaExceeded` when a quota would be passed, `BackendUnavailable` when the store cannot
    be reached.
    """

    async def insert(
        self,
        record: FileRecord,
        *,
        quota: Quota | None = None,
        idempotency_key: str | None = None,
        key_since: int = 0,
    ) -> str:
        """Add a new record, counting it and its ``bytes`` in the owner's usage, in one
        transaction; return its id.

        A ``pending`` record is an upload whose bytes are on their way (`reserve`, then
        `commit`); an ``active`` record is a file whose bytes are stored already, visible at
        once (a small upload, recorded in one step). `QuotaExceeded` (and nothing added) if
        that would pass ``quota``; `Conflict` if the id exists already.

        With ``idempotency_key`` (for an ``active`` record only; `ValueError` for another), the
        key is looked up first and remembered in the same transaction, as `commit` does at
        ``record.changed_at``: if the owner has a file under it, nothing is added (and no quota
        checked) and that file's id is returned. Of concurrent inserts and commits with one
        key, exactly one makes its file visible and the others return its id.
        """
        ...

    async def reserve(self, owner: str, file_id: str, size: int, *, quota: Quota | None) -> bool:
        """Grow the pending record's reserved ``bytes`` by ``size``, and the usage with it.

        False, changing nothing, if that would pass ``quota`` or the record is not pending.
        """
        ...

    async def commit(
        self, record: FileRecord, *, idempotency_key: str | None = None, key_since: int = 0
    ) -> str:
        """Make the pending record with this id and owner ``active`` as ``record`` says, the
        usage following the change of ``bytes``; return its id.

        With ``idempotency_key``: if the owner already has a file under that key, remembered
        at or after ``key_since`` (Unix seconds) and still visible at ``record.changed_at``
        (the time of this commit), commit nothing and return that file's id; else remember
        the key for this file in the same transaction, in place of a file that expired, was
        deleted or is gone. Of concurrent commits with one key, exactly one makes its file
        visible and the others return its id. Keys, like owners, are compared exactly (case,
        accents, trailing spaces and Unicode normalization all count). `Conflict` when the
        pending record no longer exists.
        """
        ...

    async def idempotent_file(self, owner: str, key: str, *, since: int) -> str | None:
        """The id of the file the owner created under ``key`` at or after ``since``, or None
        once that file is deleted or gone (an expired file may still answer: check that it is
        visible before use)."""
        ...

    async def get(
        self, owner: str, file_id: str, *, now: int, include_deleted: bool = False
    ) -> FileRecord | None:
        """The visible record (or, with ``include_deleted``, a ``deleted`` one), or None."""
        ...

    async def list(
        self,
        owner: str,
        *,
        now: int,
        purpose: str | None = None,
        after: Cursor | None = None,
        limit: int,
        order: Order = "desc",
    ) -> list[FileRecord]:
        """Up to ``limit`` visible records in ``order``, starting strictly after ``after``."""
        ...

    async def usage(self, owner: str) -> Usage:
        """The owner's current usage."""
        ...

    async def begin_delete(self, owner: str, file_id: str, *, now: int) -> FileRecord | None:
        """Atomically make the visible record ``deleting`` (no longer counted in the usage)
        and return it so; None if not visible; `Conflict` if it is held.

        Of several concurrent callers for one file, exactly one gets the record.
        """
        ...

    async def remove(self, owner: str, file_id: str, *, keep_record: bool = False) -> None:
        """Delete the record in whatever state, or with ``keep_record`` turn it ``deleted``
        (status ``deleted``, zero usage); a missing record is a no-op."""
        ...

    async def hold(self, owner: str, file_id: str, holder: str, *, now: int) -> bool:
        """Hold the visible file for ``holder`` (idempotent per holder): it cannot be deleted
        and does not expire until every holder has released it. False if not visible."""
        ...

    async def release(self, owner: str, file_id: str, holder: str) -> bool:
        """Drop ``holder``'s hold; False if it held nothing. Releasing an expired file makes
        it gone at once."""
        ...

    async def claim_for_sweep(
        self, *, now: int, stale_before: int, limit: int
    ) -> builtins.list[FileRecord]:
        """Claim up to ``limit`` records that need cleaning up, for one sweeper.

        Candidates are expired unheld ``active`` records, and ``pending`` or ``deleting``
        records whose ``changed_at`` is before ``stale_before`` (an upload or deletion that
        died). Each claimed record turns ``deleting`` with ``changed_at = now`` and leaves the
        usage; it is returned as it was before the claim. Concurrent sweepers never claim the
        same record twice.
        """
        ...

    async def existing_keys(self, keys: builtins.list[str]) -> set[str]:
        """Which of these storage keys belong to a file record (in any state, of any owner)
        or to an upload's part."""
        ...

    async def create_upload(self, upload: UploadRecord, *, max_open: int | None = None) -> None:
        """Add a new ``pending`` upload (its running totals zero), counting it in the owner's
        `Usage.open_uploads`.

        `QuotaExceeded` (and nothing added) if the owner has ``max_open`` open uploads already;
        `Conflict` (and nothing added) if an upload with this id exists, of any owner. Of
        concurrent creates, exactly as many succeed as the bound leaves room for.
        """
        ...

    async def get_upload(self, owner: str, upload_id: str) -> UploadRecord | None:
        """The owner's upload, with its running totals, or None (also for another owner's)."""
        ...

    async def move_upload(
        self,
        owner: str,
        upload_id: str,
        *,
        from_states: tuple[UploadState, ...],
        to: UploadState,
        file_id: str | None = None,
    ) -> bool:
        """Atomically move the owner's upload from one of ``from_states`` to ``to`` (recording
        ``file_id``; None keeps the one recorded); False, changing nothing, if it is in no such
        state, missing or another owner's. Of concurrent callers, exactly one wins.
        ``from_states`` are all open or all closed (a store may refuse a mix with
        `ValueError`); a move between open states (``completing`` back to ``pending`` when a
        completion fails) changes no total.

        A move that closes an open upload (to ``completed``, ``cancelled`` or ``expired``)
        also, in the same transaction, takes it out of `Usage.open_uploads` and gives back
        what parts on their way had reserved: its ``reserved`` falls to its ``received``.
        """
        ...

    async def reserve_upload(
        self, owner: str, upload_id: str, size: int, *, quota: Quota | None
    ) -> bool:
        """Grow the pending upload's ``reserved`` by ``size`` bytes (``size`` > 0), and the
        owner's usage with it, for a part on its way to storage.

        False, changing nothing, if that would pass ``quota`` or the upload is not pending.
        """
        ...

    async def release_upload(self, owner: str, upload_id: str, size: int) -> None:
        """Give back ``size`` bytes that `reserve_upload` reserved for a part that was not
        added. A no-op once the upload is no longer open (closing it gave them back)."""
        ...

    async def claim_part_numbers(
        self, owner: str, upload_id: str, count: int, *, multipart: str, limit: int
    ) -> tuple[str, int] | None:
        """Atomically, on the owner's ``pending`` upload: set its ``multipart`` to
        ``multipart`` unless it has one already, and claim the next ``count`` part numbers of
        it (``count`` > 0), if its ``part_numbers`` stay within ``limit``. Return the upload's
        multipart (``multipart``, or the one another request set first) and the first number
        claimed (numbers start at 1). No two claims ever return the same number.

        None, changing nothing, if the upload is not pending (or is missing, or another
        owner's) or the numbers would pass ``limit``.
        """
        ...

    async def add_part(
        self, part: PartRecord, *, reserved: int = 0, max_parts: int | None = None
    ) -> PartOutcome:
        """Add a part while its upload is ``pending``, if the upload's parts then hold at
        most its declared ``bytes`` and, with ``max_parts``, number at most ``max_parts``.

        In the same transaction the upload's ``received`` and ``part_count`` grow, and its
        ``reserved`` (with the owner's usage) becomes what it was, minus the ``reserved``
        bytes reserved for this part, plus the part's bytes: what the part did not use is
        given back, what it used beyond its reservation is counted (without a quota check).
        A refused part gives back its reservation if the upload is still open. A part whose
        upload is missing or another owner's is refused as ``not_pending``.
        """
        ...

    async def get_parts(self, owner: str, upload_id: str) -> builtins.list[PartRecord]:
        """Every part of the owner's upload, in no particular order; none for a missing
        upload or another owner's."""
        ...

    async def expire_uploads(self, *, now: int) -> int:
        """Turn the pending (or stuck completing) uploads of every owner whose ``expires_at``
        has come (``now >= expires_at``) ``expired``, each closed as `move_upload` closes one;
        return how many. Closed uploads are left as they are."""
        ...

    async def finished_parts(self, *, limit: int) -> builtins.list[PartRecord]:
        """Up to ``limit`` parts, of any owner, whose upload is completed, cancelled or expired
        (their bytes are no longer needed), in no particular order. A part is listed until
        `remove_part` forgets it, so the sweeper calls this again until it returns fewer."""
        ...

    async def remove_part(self, part_id: str) -> None:
        """Forget a part; its bytes leave its upload's ``received`` and ``reserved`` (and the
        owner's usage) and it leaves ``part_count``, in the same transaction. A missing part
        is a no-op."""
        ...

    async def aclose(self) -> None:
        """Release connections. The store is not used afterwards; closing it again is
        harmless."""
        ...


@runtime_checkable
class OffsetPaging(Protocol):
    """A metadata store that can also page by position and count, for `Policy.list_offset`
    (a capability: stores without it serve cursor pages only)."""

    async def count(self, owner: str, *, now: int, purpose: str | None = None) -> int:
        """How many files `MetadataStore.list` has for the owner (visible at ``now``, of
        ``purpose`` if given), in all."""
        ...

    async def list_at(
        self,
        owner: str,
        *,
        now: int,
        purpose: str | None = None,
        offset: int,
        limit: int,
        order: Order = "desc",
    ) -> builtins.list[FileRecord]:
        """The files `MetadataStore.list` returns without a cursor, after skipping the first
        ``offset`` of them (an offset past the end: none)."""
        ...


@runtime_checkable
class PartBatches(Protocol):
    """A metadata store that forgets many parts in one transaction (a capability: without
    it, the Uploads API forgets the parts of a closed upload one `remove_part` at a time)."""

    async def remove_parts(self, part_ids: builtins.list[str]) -> None:
        """Forget the parts, as `MetadataStore.remove_part` forgets each (their bytes leave
        their uploads' totals and the owners' usage, missing parts are no-ops), all in one
        transaction, or in a few for very many parts."""
        ...


@runtime_checkable
class StatusUpdates(Protocol):
    """A metadata store that can record a file's status after it was created, for
    ``Policy(validation="deferred")`` (a capability)."""

    async def set_status(
        self, owner: str, file_id: str, *, status: str, details: str | None, now: int
    ) -> FileRecord | None:
        """Record ``status`` and ``details`` on the owner's file visible at ``now``, and return
        the record as it now is; None, changing nothing, when there is no such file."""
        ...


@runtime_checkable
class UsageListing(Protocol):
    """A metadata store that can list every owner's usage, for billing and support (a
    capability: `FilesService.list_usage` and the admin view need it)."""

    async def list_usage(
        self, *, after: str | None = None, limit: int
    ) -> builtins.list[tuple[str, Usage]]:
        """Up to ``limit`` ``(owner, usage)`` pairs of the owners that store something (a
        file, bytes or an open upload), in ascending order of owner, starting strictly after
        the owner ``after``; the order is the store's own (a database's collation), the same
        from page to page, so paging with the last owner never skips or repeats one."""
        ...


@runtime_checkable
class InlineFiles(Protocol):
    """A metadata store that keeps the bytes of small files itself, written in the one
    transaction that inserts the file's record (a capability: `FilesService`'s
    ``inline_max`` needs it). Such a file costs one commit, where a file in storage costs
    its own flushes before its record's commit.

    The bytes are kept under the record's ``storage_key`` (which `openai_files.ids` marks as
    inline) and removed as storage removes bytes: by `delete_inline`, before the record goes
    (`MetadataStore.remove`), so a ``deleting`` record left by a failure still leads the
    sweeper to them.
    """

    async def insert_inline(
        self,
        record: FileRecord,
        data: bytes,
        *,
        quota: Quota | None = None,
        idempotency_key: str | None = None,
        key_since: int = 0,
    ) -> str:
        """`MetadataStore.insert` of ``record`` that also keeps ``data`` under its
        ``storage_key``, in the same transaction: both are written or neither. When the key
        answers with an earlier file, its id is returned and ``data`` is not kept."""
        ...

    async def read_inline(self, storage_key: str) -> bytes | None:
        """The bytes kept under ``storage_key``; None when there are none (removed)."""
        ...

    async def get_inline(
        self, owner: str, file_id: str, *, now: int
    ) -> tuple[FileRecord, bytes | None] | None:
        """`MetadataStore.get` of the owner's file visible at ``now`` and, in the same read,
        the bytes kept under its storage key (None for a file whose bytes are in storage, or
        removed): a small file's download in one round trip."""
        ...

    async def delete_inline(self, storage_key: str) -> None:
        """Remove the bytes kept under ``storage_key``; nothing to remove is no error."""
        ...
