"""`Core`: what `FilesService`, its uploads and its sweeper share, below all three of them.

The two backends, the policy, the clock and the event hooks, with the few operations every
one of them needs: the time, events, what clients can see of a file, reading a file's bytes
and removing them and its record in the one order that never forgets bytes. A file's bytes
are in storage, or, for a small file the metadata store keeps (`InlineFiles`), in that store
under a key `openai_files.ids.is_inline` tells apart.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import TypeVar

from ._checks import checked_owner
from ._clock import Clock
from .errors import BlobNotFound, FileNotFound
from .events import EventHook, FileEvent, FileEventKind, emit
from .ids import is_inline
from .inputs import possible_id
from .metadata.base import FileRecord, InlineFiles, MetadataStore
from .models import FileObject
from .policy import DAY, Policy
from .storage.base import Storage, chained

__all__ = ["IDEMPOTENCY_WINDOW", "Core", "check_id", "file_object", "found"]

_T = TypeVar("_T")

log = logging.getLogger("openai_files")

IDEMPOTENCY_WINDOW = DAY
"""How long an ``Idempotency-Key`` keeps answering with the file it first created (while
that file is visible)."""


@dataclass(frozen=True)
class Core:
    """One service's backends, policy, clock and event hooks; ``inline_max``: the largest
    file whose bytes the metadata store keeps (0: none; see `FilesService`)."""

    storage: Storage
    metadata: MetadataStore
    policy: Policy
    clock: Clock
    events: Sequence[EventHook]
    inline_max: int = 0

    def now(self) -> int:
        """The current time in whole Unix seconds, by this service's clock."""
        return int(self.clock())

    async def emit(self, kind: FileEventKind, owner: str, file: FileObject) -> None:
        """Tell the event hooks that ``kind`` happened to ``file``."""
        if self.events:
            await emit(self.events, FileEvent(kind=kind, owner=owner, file=file, at=self.now()))

    async def visible(self, owner: str, file_id: str) -> FileRecord:
        """The record of a file the owner can see now, or `FileNotFound`."""
        check_id(file_id)
        record = await self.metadata.get(checked_owner(owner), file_id, now=self.now())
        return found(file_id, record)

    async def retrieve(self, owner: str, file_id: str) -> FileObject:
        """The file, as `FilesService.retrieve` returns it."""
        check_id(file_id)
        record = await self.metadata.get(
            checked_owner(owner),
            file_id,
            now=self.now(),
            include_deleted=self.policy.soft_delete,
        )
        return file_object(found(file_id, record))

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
        return await self.remove_bytes(record) and await self.forget(record, keep_record)

    async def remove_bytes(self, record: FileRecord) -> bool:
        """The first half of `purge`: remove the record's bytes; False (logged) if they could
        not be, in which case its record must stay."""
        try:
            await self.delete_bytes(record.storage_key)
        except Exception:
            log.warning("removing the bytes of %s failed; the sweeper will retry", record.id)
            return False
        return True

    async def forget(self, record: FileRecord, keep_record: bool = False) -> bool:
        """The second half of `purge`, once the bytes are gone: remove the record (or keep it
        as ``deleted``); False (logged) if that failed."""
        try:
            await self.metadata.remove(record.owner, record.id, keep_record=keep_record)
        except Exception:
            log.warning("removing the record of %s failed; the sweeper will retry", record.id)
            return False
        return True

    async def visible_with_bytes(self, owner: str, file_id: str) -> tuple[FileRecord, bytes | None]:
        """`visible`, and the file's bytes if the metadata store keeps them, read with the
        record in one round trip where small files are kept (``inline_max``); else None."""
        if not self.inline_max:
            return await self.visible(owner, file_id), None
        check_id(file_id)
        kept = await self.inline_files.get_inline(checked_owner(owner), file_id, now=self.now())
        return found(file_id, kept)

    async def read_bytes(
        self, storage_key: str, *, start: int, end: int, kept: bytes | None = None
    ) -> AsyncIterator[bytes]:
        """The bytes ``start`` to ``end`` (exclusive) of a file; `BlobNotFound` if gone.
        ``kept``: the file's bytes, read already from the metadata store that keeps them."""
        if not is_inline(storage_key):
            return await self.storage.get(storage_key, start=start, end=end)
        data = kept if kept is not None else await self.inline_files.read_inline(storage_key)
        if data is None:
            raise BlobNotFound(storage_key)
        part = data[start:end]
        return chained([part] if part else [])

    async def delete_bytes(self, storage_key: str) -> None:
        """Remove a file's bytes (from storage, or the metadata store that keeps them)."""
        if is_inline(storage_key):
            await self.inline_files.delete_inline(storage_key)
        else:
            await self.storage.delete(storage_key)

    @property
    def inline_files(self) -> InlineFiles:
        """The metadata store as the keeper of small files' bytes; `TypeError` if it is not."""
        if self._inline_files is None:
            raise TypeError(f"{self.metadata!r} keeps no file's bytes (InlineFiles)")
        return self._inline_files

    @cached_property
    def _inline_files(self) -> InlineFiles | None:
        # Looked up once: a check against a runtime protocol costs microseconds each time.
        return self.metadata if isinstance(self.metadata, InlineFiles) else None


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


def check_id(file_id: str) -> None:
    """`FileNotFound` for an id no file can have, before any backend is asked."""
    if not possible_id(file_id):
        raise FileNotFound(file_id)


def found(file_id: str, looked_up: _T | None) -> _T:
    """What a look-up of ``file_id`` found (``looked_up``); `FileNotFound` when it found
    nothing."""
    if looked_up is None:
        raise FileNotFound(file_id)
    return looked_up
