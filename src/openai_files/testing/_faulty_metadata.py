"""`FaultyMetadataStore`: a `MetadataStore` that fails on command (see `faults`)."""

from __future__ import annotations

import builtins

from ..metadata.base import (
    Cursor,
    FileRecord,
    InlineFiles,
    MetadataStore,
    OffsetPaging,
    Order,
    PartBatches,
    PartOutcome,
    PartRecord,
    Quota,
    StatusUpdates,
    UploadRecord,
    UploadState,
    Usage,
    UsageListing,
)
from ._switchboard import RandomFaults, Switchboard, Trigger

__all__ = ["FaultyMetadataStore"]


class FaultyMetadataStore(Switchboard):
    """A `MetadataStore` that forwards to ``inner`` and fails where it is told to.

    Switches (see `Trigger`): ``fail_insert``, ``fail_commit``, ``fail_get``, ``fail_list``,
    ``fail_begin_delete``, ``fail_remove``, ``fail_claim_for_sweep``, and for the bytes of
    small files (`InlineFiles`) ``fail_insert_inline``, ``fail_read_inline``,
    ``fail_get_inline`` and ``fail_delete_inline``. ``down`` fails every
    call but `aclose`, and `RandomFaults` may fail any call by its method's name.

    It offers the optional capabilities (`StatusUpdates`, `OffsetPaging`, `UsageListing`,
    `InlineFiles`)
    whatever it wraps; over a store without one, its first call raises `TypeError`.
    """

    def __init__(self, inner: MetadataStore, *, random_faults: RandomFaults | None = None) -> None:
        self.inner = inner
        super().__init__("The metadata store", random_faults)
        self._switches_off()

    def _switches_off(self) -> None:
        self.fail_insert: Trigger = False
        self.fail_commit: Trigger = False
        self.fail_get: Trigger = False
        self.fail_list: Trigger = False
        self.fail_begin_delete: Trigger = False
        self.fail_remove: Trigger = False
        self.fail_claim_for_sweep: Trigger = False
        self.fail_insert_inline: Trigger = False
        self.fail_read_inline: Trigger = False
        self.fail_get_inline: Trigger = False
        self.fail_delete_inline: Trigger = False

    def __repr__(self) -> str:
        return f"FaultyMetadataStore({self.inner!r})"

    async def insert(
        self,
        record: FileRecord,
        *,
        quota: Quota | None = None,
        idempotency_key: str | None = None,
        key_since: int = 0,
    ) -> str:
        return await self._call(
            "insert",
            lambda: self.inner.insert(
                record, quota=quota, idempotency_key=idempotency_key, key_since=key_since
            ),
        )

    async def insert_inline(
        self,
        record: FileRecord,
        data: bytes,
        *,
        quota: Quota | None = None,
        idempotency_key: str | None = None,
        key_since: int = 0,
    ) -> str:
        inner = _inline_files(self.inner)
        return await self._call(
            "insert_inline",
            lambda: inner.insert_inline(
                record, data, quota=quota, idempotency_key=idempotency_key, key_since=key_since
            ),
        )

    async def read_inline(self, storage_key: str) -> bytes | None:
        inner = _inline_files(self.inner)
        return await self._call("read_inline", lambda: inner.read_inline(storage_key))

    async def get_inline(
        self, owner: str, file_id: str, *, now: int
    ) -> tuple[FileRecord, bytes | None] | None:
        inner = _inline_files(self.inner)
        return await self._call("get_inline", lambda: inner.get_inline(owner, file_id, now=now))

    async def delete_inline(self, storage_key: str) -> None:
        inner = _inline_files(self.inner)
        return await self._call("delete_inline", lambda: inner.delete_inline(storage_key))

    async def reserve(self, owner: str, file_id: str, size: int, *, quota: Quota | None) -> bool:
        return await self._call(
            "reserve", lambda: self.inner.reserve(owner, file_id, size, quota=quota)
        )

    async def commit(
        self, record: FileRecord, *, idempotency_key: str | None = None, key_since: int = 0
    ) -> str:
        return await self._call(
            "commit",
            lambda: self.inner.commit(record, idempotency_key=idempotency_key, key_since=key_since),
        )

    async def idempotent_file(self, owner: str, key: str, *, since: int) -> str | None:
        return await self._call(
            "idempotent_file", lambda: self.inner.idempotent_file(owner, key, since=since)
        )

    async def get(
        self, owner: str, file_id: str, *, now: int, include_deleted: bool = False
    ) -> FileRecord | None:
        return await self._call(
            "get",
            lambda: self.inner.get(owner, file_id, now=now, include_deleted=include_deleted),
        )

    async def list(
        self,
        owner: str,
        *,
        now: int,
        purpose: str | None = None,
        after: Cursor | None = None,
        limit: int,
        order: Order = "desc",
    ) -> builtins.list[FileRecord]:
        return await self._call(
            "list",
            lambda: self.inner.list(
                owner, now=now, purpose=purpose, after=after, limit=limit, order=order
            ),
        )

    async def usage(self, owner: str) -> Usage:
        return await self._call("usage", lambda: self.inner.usage(owner))

    async def list_usage(
        self, *, after: str | None = None, limit: int
    ) -> builtins.list[tuple[str, Usage]]:
        inner = self.inner
        if not isinstance(inner, UsageListing):
            raise TypeError(f"{inner!r} cannot list usage (it is no UsageListing store)")
        return await self._call("list_usage", lambda: inner.list_usage(after=after, limit=limit))

    async def set_status(
        self, owner: str, file_id: str, *, status: str, details: str | None, now: int
    ) -> FileRecord | None:
        inner = self.inner
        if not isinstance(inner, StatusUpdates):
            raise TypeError(f"{inner!r} cannot record a status (it is no StatusUpdates store)")
        return await self._call(
            "set_status",
            lambda: inner.set_status(owner, file_id, status=status, details=details, now=now),
        )

    async def count(self, owner: str, *, now: int, purpose: str | None = None) -> int:
        inner = _offset_paging(self.inner)
        return await self._call("count", lambda: inner.count(owner, now=now, purpose=purpose))

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
        inner = _offset_paging(self.inner)
        return await self._call(
            "list_at",
            lambda: inner.list_at(
                owner, now=now, purpose=purpose, offset=offset, limit=limit, order=order
            ),
        )

    async def begin_delete(self, owner: str, file_id: str, *, now: int) -> FileRecord | None:
        return await self._call(
            "begin_delete", lambda: self.inner.begin_delete(owner, file_id, now=now)
        )

    async def remove(self, owner: str, file_id: str, *, keep_record: bool = False) -> None:
        await self._call(
            "remove", lambda: self.inner.remove(owner, file_id, keep_record=keep_record)
        )

    async def hold(self, owner: str, file_id: str, holder: str, *, now: int) -> bool:
        return await self._call("hold", lambda: self.inner.hold(owner, file_id, holder, now=now))

    async def release(self, owner: str, file_id: str, holder: str) -> bool:
        return await self._call("release", lambda: self.inner.release(owner, file_id, holder))

    async def claim_for_sweep(
        self, *, now: int, stale_before: int, limit: int
    ) -> builtins.list[FileRecord]:
        return await self._call(
            "claim_for_sweep",
            lambda: self.inner.claim_for_sweep(now=now, stale_before=stale_before, limit=limit),
        )

    async def existing_keys(self, keys: builtins.list[str]) -> set[str]:
        return await self._call("existing_keys", lambda: self.inner.existing_keys(keys))

    async def create_upload(self, upload: UploadRecord, *, max_open: int | None = None) -> None:
        await self._call(
            "create_upload", lambda: self.inner.create_upload(upload, max_open=max_open)
        )

    async def get_upload(self, owner: str, upload_id: str) -> UploadRecord | None:
        return await self._call("get_upload", lambda: self.inner.get_upload(owner, upload_id))

    async def move_upload(
        self,
        owner: str,
        upload_id: str,
        *,
        from_states: tuple[UploadState, ...],
        to: UploadState,
        file_id: str | None = None,
    ) -> bool:
        return await self._call(
            "move_upload",
            lambda: self.inner.move_upload(
                owner, upload_id, from_states=from_states, to=to, file_id=file_id
            ),
        )

    async def reserve_upload(
        self, owner: str, upload_id: str, size: int, *, quota: Quota | None
    ) -> bool:
        return await self._call(
            "reserve_upload",
            lambda: self.inner.reserve_upload(owner, upload_id, size, quota=quota),
        )

    async def claim_part_numbers(
        self, owner: str, upload_id: str, count: int, *, multipart: str, limit: int
    ) -> tuple[str, int] | None:
        return await self._call(
            "claim_part_numbers",
            lambda: self.inner.claim_part_numbers(
                owner, upload_id, count, multipart=multipart, limit=limit
            ),
        )

    async def release_upload(self, owner: str, upload_id: str, size: int) -> None:
        await self._call(
            "release_upload", lambda: self.inner.release_upload(owner, upload_id, size)
        )

    async def add_part(
        self, part: PartRecord, *, reserved: int = 0, max_parts: int | None = None
    ) -> PartOutcome:
        return await self._call(
            "add_part", lambda: self.inner.add_part(part, reserved=reserved, max_parts=max_parts)
        )

    async def get_parts(self, owner: str, upload_id: str) -> builtins.list[PartRecord]:
        return await self._call("get_parts", lambda: self.inner.get_parts(owner, upload_id))

    async def expire_uploads(self, *, now: int) -> int:
        return await self._call("expire_uploads", lambda: self.inner.expire_uploads(now=now))

    async def finished_parts(self, *, limit: int) -> builtins.list[PartRecord]:
        return await self._call("finished_parts", lambda: self.inner.finished_parts(limit=limit))

    async def remove_part(self, part_id: str) -> None:
        await self._call("remove_part", lambda: self.inner.remove_part(part_id))

    async def remove_parts(self, part_ids: builtins.list[str]) -> None:
        """`PartBatches`, over any store: one `remove_part` at a time over one without it."""
        await self._call("remove_parts", lambda: _remove_parts(self.inner, part_ids))

    async def aclose(self) -> None:
        await self.inner.aclose()


async def _remove_parts(store: MetadataStore, part_ids: builtins.list[str]) -> None:
    if isinstance(store, PartBatches):
        await store.remove_parts(part_ids)
        return
    for part_id in part_ids:
        await store.remove_part(part_id)


def _offset_paging(store: MetadataStore) -> OffsetPaging:
    if not isinstance(store, OffsetPaging):
        raise TypeError(f"{store!r} cannot page by offset (it is no OffsetPaging store)")
    return store


def _inline_files(inner: MetadataStore) -> InlineFiles:
    if not isinstance(inner, InlineFiles):
        raise TypeError(f"{inner!r} keeps no file's bytes (it is no InlineFiles store)")
    return inner
