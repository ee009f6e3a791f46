"""`MemoryMetadataStore`: records in process memory, for tests and single-process use."""

from __future__ import annotations

import bisect
import builtins

from ..errors import Conflict, QuotaExceeded
from ._memory_uploads import MemoryUploadRecords
from ._records import check_keyed
from .base import Cursor, FileRecord, Order, Quota, Usage

__all__ = ["MemoryMetadataStore"]


class MemoryMetadataStore(MemoryUploadRecords):
    """Keeps records in dicts, with each owner's cursors in a sorted list for listing (and
    in one per owner and purpose, for a purpose's pages); uploads and their parts in dicts
    too (`MemoryUploadRecords`).

    Every method runs without awaiting anything, so on one event loop each is atomic.
    """

    def __init__(self) -> None:
        super().__init__()
        self._records: dict[str, FileRecord] = {}
        self._order: dict[str, list[Cursor]] = {}
        self._by_purpose: dict[tuple[str, str], list[Cursor]] = {}
        self._holds: dict[str, set[str]] = {}
        self._keys: dict[tuple[str, str], tuple[str, int]] = {}
        self._inline: dict[str, bytes] = {}  # storage key -> a small file's bytes

    def __repr__(self) -> str:
        return f"MemoryMetadataStore(records={len(self._records)})"

    async def insert(
        self,
        record: FileRecord,
        *,
        quota: Quota | None = None,
        idempotency_key: str | None = None,
        key_since: int = 0,
    ) -> str:
        """Add the record to the dict and its cursor to the owner's sorted list; the usage is
        counted from the records, so the quota check sees every pending and active one. A key
        is looked up and remembered as `commit` does."""
        check_keyed(record, idempotency_key)
        if idempotency_key is not None:
            earlier = self._key_file(record.owner, idempotency_key, key_since, record.changed_at)
            if earlier is not None:
                return earlier
        if record.id in self._records:
            raise Conflict(f"A file with id {record.id} exists already.")
        if quota is not None:
            usage = self._usage(record.owner)
            if not quota.allows(usage.files + 1, usage.bytes + record.bytes):
                raise QuotaExceeded.for_usage(quota.max_files, quota.max_bytes, usage.files)
        self._records[record.id] = record
        bisect.insort(self._order.setdefault(record.owner, []), record.cursor)
        bisect.insort(self._by_purpose.setdefault(_listed_as(record), []), record.cursor)
        if idempotency_key is not None:
            self._keys[(record.owner, idempotency_key)] = (record.id, record.changed_at)
        return record.id

    async def insert_inline(
        self,
        record: FileRecord,
        data: bytes,
        *,
        quota: Quota | None = None,
        idempotency_key: str | None = None,
        key_since: int = 0,
    ) -> str:
        """`insert`, then ``data`` kept under the record's storage key if it was inserted
        (`InlineFiles`); nothing awaits in between."""
        file_id = await self.insert(
            record, quota=quota, idempotency_key=idempotency_key, key_since=key_since
        )
        if file_id == record.id:
            self._inline[record.storage_key] = bytes(data)
        return file_id

    async def read_inline(self, storage_key: str) -> bytes | None:
        """The bytes kept under ``storage_key``, if any."""
        return self._inline.get(storage_key)

    async def get_inline(
        self, owner: str, file_id: str, *, now: int
    ) -> tuple[FileRecord, bytes | None] | None:
        """`get`, and the bytes kept under the record's storage key."""
        record = await self.get(owner, file_id, now=now)
        return None if record is None else (record, self._inline.get(record.storage_key))

    async def delete_inline(self, storage_key: str) -> None:
        """Drop the bytes kept under ``storage_key``, if any."""
        self._inline.pop(storage_key, None)

    async def reserve(self, owner: str, file_id: str, size: int, *, quota: Quota | None) -> bool:
        """Grow the pending record's ``bytes`` in place; the usage follows, being counted."""
        record = self._own(owner, file_id)
        if record is None or record.state != "pending" or not self._fits(owner, size, quota):
            return False
        self._records[file_id] = record.replace(bytes=record.bytes + size)
        return True

    async def commit(
        self, record: FileRecord, *, idempotency_key: str | None = None, key_since: int = 0
    ) -> str:
        """Replace the pending record with ``record`` made ``active``, remembering the key
        (with the time of the commit) in a dict by owner and key."""
        current = self._own(record.owner, record.id)
        if current is None or current.state != "pending":
            raise Conflict("The upload was abandoned before it completed; upload it again.")
        if idempotency_key is not None:
            earlier = self._key_file(record.owner, idempotency_key, key_since, record.changed_at)
            if earlier is not None:
                return earlier
            self._keys[(record.owner, idempotency_key)] = (record.id, record.changed_at)
        self._records[record.id] = record.replace(state="active")
        return record.id

    async def idempotent_file(self, owner: str, key: str, *, since: int) -> str | None:
        """Look the key up in the dict of keys; a file no longer ``active`` frees it."""
        return self._key_file(owner, key, since, None)

    def _key_file(self, owner: str, key: str, since: int, now: int | None) -> str | None:
        """The file of the owner's key, if it is still there (and visible at ``now``, if
        given): after a failed, deleted or expired upload the key is free again."""
        found = self._keys.get((owner, key))
        if found is None or found[1] < since:
            return None
        record = self._records.get(found[0])
        if record is None or record.state != "active":
            return None
        return found[0] if now is None or record.visible_at(now) else None

    async def get(
        self, owner: str, file_id: str, *, now: int, include_deleted: bool = False
    ) -> FileRecord | None:
        """One dict lookup, then the visibility check."""
        record = self._own(owner, file_id)
        if record is None:
            return None
        if record.visible_at(now) or (include_deleted and record.state == "deleted"):
            return record
        return None

    async def set_status(
        self, owner: str, file_id: str, *, status: str, details: str | None, now: int
    ) -> FileRecord | None:
        """Replace the visible record with one of the new status and details."""
        record = await self.get(owner, file_id, now=now)
        if record is None:
            return None
        updated = record.replace(status=status, status_details=details)
        self._records[file_id] = updated
        return updated

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
        """Bisect the owner's sorted cursors (of ``purpose``) to ``after`` and walk them in
        ``order``, skipping records that are not visible."""
        if purpose is None:
            cursors = self._order.get(owner, [])
        else:
            cursors = self._by_purpose.get((owner, purpose), [])
        if order == "asc":
            start = 0 if after is None else bisect.bisect_right(cursors, after)
            positions = range(start, len(cursors))
        else:
            stop = len(cursors) if after is None else bisect.bisect_left(cursors, after)
            positions = range(stop - 1, -1, -1)
        page: list[FileRecord] = []
        for position in positions:
            record = self._records[cursors[position][1]]
            if record.visible_at(now):
                page.append(record)
                if len(page) == limit:
                    break
        return page

    async def count(self, owner: str, *, now: int, purpose: str | None = None) -> int:
        """Count the owner's visible records (of ``purpose``) one by one."""
        return len(self._listed(owner, now, purpose))

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
        """Slice the owner's visible records (of ``purpose``), in ``order``."""
        listed = self._listed(owner, now, purpose)
        if order == "desc":
            listed.reverse()
        return listed[offset : offset + limit]

    def _listed(self, owner: str, now: int, purpose: str | None) -> builtins.list[FileRecord]:
        """The owner's visible files (of ``purpose``), oldest first."""
        records = (self._records[file_id] for _, file_id in self._order.get(owner, []))
        return [
            record
            for record in records
            if record.visible_at(now) and (purpose is None or record.purpose == purpose)
        ]

    async def usage(self, owner: str) -> Usage:
        """Counted on each call from the owner's pending and active records and the bytes
        their uploads hold."""
        return self._usage(owner)

    async def list_usage(
        self, *, after: str | None = None, limit: int
    ) -> builtins.list[tuple[str, Usage]]:
        """Counted on each call, over every owner with records or uploads (`UsageListing`)."""
        owners = {r.owner for r in self._records.values()} | {
            u.owner for u in self._uploads.values()
        }
        found = []
        for owner in sorted(o for o in owners if after is None or o > after):
            usage = self._usage(owner)
            if usage.files or usage.bytes or usage.open_uploads:
                found.append((owner, usage))
                if len(found) == limit:
                    break
        return found

    async def begin_delete(self, owner: str, file_id: str, *, now: int) -> FileRecord | None:
        """Turn the visible, unheld record ``deleting``; atomic, since nothing is awaited."""
        record = await self.get(owner, file_id, now=now)
        if record is None:
            return None
        if record.hold_count:
            raise Conflict(f"The file {file_id} is in use by a batch and cannot be deleted now.")
        deleting = record.replace(state="deleting", changed_at=now)
        self._records[file_id] = deleting
        return deleting

    async def remove(self, owner: str, file_id: str, *, keep_record: bool = False) -> None:
        """Drop the record, its holds and its cursor (or keep it ``deleted``)."""
        record = self._own(owner, file_id)
        if record is None:
            return
        if keep_record:
            self._records[file_id] = record.replace(state="deleted", status="deleted")
            return
        del self._records[file_id]
        self._holds.pop(file_id, None)
        for cursors in (self._order[owner], self._by_purpose[_listed_as(record)]):
            del cursors[bisect.bisect_left(cursors, record.cursor)]

    async def hold(self, owner: str, file_id: str, holder: str, *, now: int) -> bool:
        """Add ``holder`` to the file's set of holders; ``hold_count`` is its size."""
        record = await self.get(owner, file_id, now=now)
        if record is None:
            return False
        holders = self._holds.setdefault(file_id, set())
        holders.add(holder)
        self._records[file_id] = record.replace(hold_count=len(holders))
        return True

    async def release(self, owner: str, file_id: str, holder: str) -> bool:
        """Remove ``holder`` from the file's set of holders."""
        record = self._own(owner, file_id)
        holders = self._holds.get(file_id, set())
        if record is None or holder not in holders:
            return False
        holders.discard(holder)
        self._records[file_id] = record.replace(hold_count=len(holders))
        return True

    async def claim_for_sweep(
        self, *, now: int, stale_before: int, limit: int
    ) -> builtins.list[FileRecord]:
        """Scan every record for candidates, turning up to ``limit`` of them ``deleting``."""
        claimed: list[FileRecord] = []
        for record in list(self._records.values()):
            if len(claimed) == limit:
                break
            if _needs_sweeping(record, now, stale_before):
                self._records[record.id] = record.replace(state="deleting", changed_at=now)
                claimed.append(record)
        return claimed

    async def existing_keys(self, keys: builtins.list[str]) -> set[str]:
        """Scan every record and part for the keys."""
        wanted = set(keys)
        stored = [r.storage_key for r in self._records.values()]
        stored += [p.storage_key for p in self._parts.values()]
        return {key for key in stored if key in wanted}

    async def aclose(self) -> None:
        """Nothing to release; the records stay until the store is dropped."""
        return None

    def _usage(self, owner: str) -> Usage:
        """The owner's usage, counted from its records and from the bytes and count of its
        open uploads."""
        records = (self._records[file_id] for _, file_id in self._order.get(owner, []))
        counted = [record for record in records if record.counts_against_quota]
        uploads = [u for u in self._uploads.values() if u.owner == owner]
        return Usage(
            files=len(counted),
            bytes=sum(r.bytes for r in counted) + sum(u.reserved for u in uploads),
            open_uploads=sum(u.is_open for u in uploads),
        )

    def _own(self, owner: str, file_id: str) -> FileRecord | None:
        record = self._records.get(file_id)
        return record if record is not None and record.owner == owner else None


def _needs_sweeping(record: FileRecord, now: int, stale_before: int) -> bool:
    if record.state == "active":
        return record.hold_count == 0 and record.expired_at(now)
    return record.state in ("pending", "deleting") and record.changed_at < stale_before


def _listed_as(record: FileRecord) -> tuple[str, str]:
    """The key of the record's cursor in the lists by owner and purpose."""
    return (record.owner, record.purpose)
