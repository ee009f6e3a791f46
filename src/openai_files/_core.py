"""`Core`: what `FilesService`, its uploads and its sweeper share, below all three of them.

The two backends, the policy, the clock and the event hooks, with the few operations every
one of them needs: the time, events, what clients can see of a file, and removing a file's
bytes and record in the one order that never forgets bytes.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

from ._checks import checked_owner
from ._clock import Clock
from .errors import FileNotFound
from .events import EventHook, FileEvent, FileEventKind, emit
from .inputs import possible_id
from .metadata.base import FileRecord, MetadataStore
from .models import FileObject
from .policy import DAY, Policy
from .storage.base import Storage

__all__ = ["IDEMPOTENCY_WINDOW", "Core", "file_object"]

log = logging.getLogger("openai_files")

IDEMPOTENCY_WINDOW = DAY
"""How long an ``Idempotency-Key`` keeps answering with the file it first created (while
that file is visible)."""


@dataclass(frozen=True)
class Core:
    """One service's backends, policy, clock and event hooks."""

    storage: Storage
    metadata: MetadataStore
    policy: Policy
    clock: Clock
    events: Sequence[EventHook]

    def now(self) -> int:
        """The current time in whole Unix seconds, by this service's clock."""
        return int(self.clock())

    async def emit(self, kind: FileEventKind, owner: str, file: FileObject) -> None:
        """Tell the event hooks that ``kind`` happened to ``file``."""
        if self.events:
            await emit(self.events, FileEvent(kind=kind, owner=owner, file=file, at=self.now()))

    async def visible(self, owner: str, file_id: str) -> FileRecord:
        """The record of a file the owner can see now, or `FileNotFound`."""
        if not possible_id(file_id):
            raise FileNotFound(file_id)
        record = await self.metadata.get(checked_owner(owner), file_id, now=self.now())
        if record is None:
            raise FileNotFound(file_id)
        return record

    async def retrieve(self, owner: str, file_id: str) -> FileObject:
        """The file, as `FilesService.retrieve` returns it."""
        if not possible_id(file_id):
            raise FileNotFound(file_id)
        record = await self.metadata.get(
            checked_owner(owner),
            file_id,
            now=self.now(),
            include_deleted=self.policy.soft_delete,
        )
        if record is None:
            raise FileNotFound(file_id)
        return file_object(record)

    def expires_at(self, record: FileRecord, purpose: str, expires_after: int | None) -> int | None:
        """When a file created as ``record`` expires: ``expires_after`` seconds after its
        creation, or the policy's default for ``purpose``, or never."""
        seconds = expires_after
        if seconds is None:
            seconds = self.policy.default_expiry.get(purpose)
        return None if seconds is None else record.created_at + seconds

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
