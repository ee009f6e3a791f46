"""`MemoryMetadataStore`: records in process memory, for tests and single-process use."""

from __future__ import annotations

import bisect

from ..errors import Conflict
from .base import Cursor, FileRecord, Order

__all__ = ["MemoryMetadataStore"]


class MemoryMetadataStore:
    """Keeps records in dicts, with each owner's cursors in a sorted list for listing."""

    def __init__(self) -> None:
        self._records: dict[str, FileRecord] = {}
        self._order: dict[str, list[Cursor]] = {}

    def __repr__(self) -> str:
        return f"MemoryMetadataStore(records={len(self._records)})"

    async def insert(self, record: FileRecord) -> None:
        if record.id in self._records:
            raise Conflict(f"A file with id {record.id} exists already.")
        self._records[record.id] = record
        bisect.insort(self._order.setdefault(record.owner, []), record.cursor)

    async def commit(self, record: FileRecord) -> bool:
        current = self._own(record.owner, record.id)
        if current is None or current.state != "pending":
            return False
        self._records[record.id] = record.replace(state="active")
        return True

    async def get(self, owner: str, file_id: str, *, now: int) -> FileRecord | None:
        record = self._own(owner, file_id)
        return record if record is not None and record.visible_at(now) else None

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
        cursors = self._order.get(owner, [])
        if order == "asc":
            start = 0 if after is None else bisect.bisect_right(cursors, after)
            positions = range(start, len(cursors))
        else:
            stop = len(cursors) if after is None else bisect.bisect_left(cursors, after)
            positions = range(stop - 1, -1, -1)
        page: list[FileRecord] = []
        for position in positions:
            record = self._records[cursors[position][1]]
            if record.visible_at(now) and (purpose is None or record.purpose == purpose):
                page.append(record)
                if len(page) == limit:
                    break
        return page

    async def begin_delete(self, owner: str, file_id: str, *, now: int) -> FileRecord | None:
        record = await self.get(owner, file_id, now=now)
        if record is None:
            return None
        deleting = record.replace(state="deleting")
        self._records[file_id] = deleting
        return deleting

    async def remove(self, owner: str, file_id: str) -> None:
        record = self._own(owner, file_id)
        if record is None:
            return
        del self._records[file_id]
        cursors = self._order[owner]
        del cursors[bisect.bisect_left(cursors, record.cursor)]

    async def aclose(self) -> None:
        return None

    def _own(self, owner: str, file_id: str) -> FileRecord | None:
        record = self._records.get(file_id)
        return record if record is not None and record.owner == owner else None
