"""The metadata conformance cases of `InlineFiles`: a small file's bytes kept by the store,
written in the transaction that inserts its record, read back (alone, or with the record) and
removed."""

from __future__ import annotations

import anyio
import pytest

from ..errors import Conflict, QuotaExceeded
from ..ids import inline_key
from ..metadata.base import FileRecord, InlineFiles, MetadataStore, Quota, Usage
from ._records import NOW, T0, make_record

__all__ = ["InlineFilesConformance"]

EVERY_BYTE = bytes(range(256)) * 4
LARGEST = 256 * 1024
"""The largest file a service keeps this way (`RECORD_AFTER`)."""


def _inline(metadata: MetadataStore) -> InlineFiles:
    if not isinstance(metadata, InlineFiles):
        pytest.skip(f"{type(metadata).__name__} keeps no file's bytes (optional)")
    return metadata


def _small(created_us: int = T0, size: int = len(EVERY_BYTE)) -> FileRecord:
    record = make_record(created_us=created_us)
    return record.replace(storage_key=inline_key(record.storage_key), bytes=size, changed_at=NOW)


class InlineFilesConformance:
    """`InlineFiles.insert_inline`, `read_inline`, `get_inline` and `delete_inline`."""

    @pytest.mark.parametrize("keyed", [False, True], ids=["alone", "under a key"])
    async def test_bytes_inserted_with_their_record_read_back_exactly(
        self, metadata: MetadataStore, keyed: bool
    ) -> None:
        store = _inline(metadata)
        record = _small()
        key = "k" if keyed else None
        answer = await store.insert_inline(
            record, EVERY_BYTE, quota=Quota(max_files=1), idempotency_key=key, key_since=0
        )
        assert answer == record.id
        assert await metadata.get("alice", record.id, now=NOW) == record
        assert await metadata.usage("alice") == Usage(files=1, bytes=len(EVERY_BYTE))
        assert await store.read_inline(record.storage_key) == EVERY_BYTE

    async def test_the_largest_small_file_and_an_empty_one_are_kept(
        self, metadata: MetadataStore
    ) -> None:
        store = _inline(metadata)
        large, empty = _small(size=LARGEST), _small(T0 + 1, size=0)
        data = EVERY_BYTE * (LARGEST // len(EVERY_BYTE))
        await store.insert_inline(large, data)
        await store.insert_inline(empty, b"")
        assert await store.read_inline(large.storage_key) == data
        assert await store.read_inline(empty.storage_key) == b""

    async def test_bytes_refused_by_the_quota_are_not_kept(self, metadata: MetadataStore) -> None:
        store = _inline(metadata)
        kept, refused = _small(), _small(T0 + 1)
        await store.insert_inline(kept, b"first", quota=Quota(max_files=1))
        with pytest.raises(QuotaExceeded):
            await store.insert_inline(refused, b"second", quota=Quota(max_files=1))
        assert await metadata.get("alice", refused.id, now=NOW) is None
        assert await store.read_inline(refused.storage_key) is None
        assert await store.read_inline(kept.storage_key) == b"first"

    async def test_bytes_of_a_conflicting_id_are_not_kept(self, metadata: MetadataStore) -> None:
        store = _inline(metadata)
        first = _small()
        await store.insert_inline(first, b"first")
        again = first.replace(storage_key=inline_key("ab/another"))
        with pytest.raises(Conflict):
            await store.insert_inline(again, b"again")
        assert await store.read_inline(again.storage_key) is None
        assert await store.read_inline(first.storage_key) == b"first"

    async def test_a_key_that_answers_with_an_earlier_file_keeps_no_new_bytes(
        self, metadata: MetadataStore
    ) -> None:
        store = _inline(metadata)
        first, second = _small(), _small(T0 + 1)
        assert await store.insert_inline(first, b"first", idempotency_key="k") == first.id
        answer = await store.insert_inline(second, b"second", idempotency_key="k")
        assert answer == first.id
        assert await store.read_inline(second.storage_key) is None
        assert await metadata.usage("alice") == Usage(files=1, bytes=first.bytes)

    async def test_delete_removes_the_bytes_only_and_may_be_repeated(
        self, metadata: MetadataStore
    ) -> None:
        store = _inline(metadata)
        gone, kept = _small(), _small(T0 + 1)
        await store.insert_inline(gone, b"gone")
        await store.insert_inline(kept, b"kept")
        await store.delete_inline(gone.storage_key)
        await store.delete_inline(gone.storage_key)
        await store.delete_inline(inline_key("ab/never-kept"))
        assert await store.read_inline(gone.storage_key) is None
        assert await store.read_inline(kept.storage_key) == b"kept"
        # The record is the service's to remove, after the bytes (as after a storage delete).
        assert await metadata.get("alice", gone.id, now=NOW) == gone

    async def test_concurrent_inserts_under_a_quota_keep_the_bytes_of_the_winners_only(
        self, metadata: MetadataStore
    ) -> None:
        store = _inline(metadata)
        records = [_small(T0 + n) for n in range(12)]
        won: list[FileRecord] = []

        async def insert(record: FileRecord) -> None:
            try:
                await store.insert_inline(record, record.id.encode(), quota=Quota(max_files=5))
            except QuotaExceeded:
                return
            won.append(record)

        async with anyio.create_task_group() as group:
            for record in records:
                group.start_soon(insert, record)
        assert len(won) == 5
        for record in records:
            expected = record.id.encode() if record in won else None
            assert await store.read_inline(record.storage_key) == expected

    async def test_get_inline_reads_a_visible_record_with_its_bytes_or_none(
        self, metadata: MetadataStore
    ) -> None:
        store = _inline(metadata)
        small = _small()
        await store.insert_inline(small, EVERY_BYTE)
        stored = make_record(created_us=T0 + 1).replace(changed_at=NOW)  # bytes in storage
        await metadata.insert(stored)
        assert await store.get_inline("alice", small.id, now=NOW) == (small, EVERY_BYTE)
        assert await store.get_inline("alice", stored.id, now=NOW) == (stored, None)
        assert await store.get_inline("bob", small.id, now=NOW) is None
        await store.delete_inline(small.storage_key)  # a delete's first step, then the record
        assert await store.get_inline("alice", small.id, now=NOW) == (small, None)
        assert await metadata.begin_delete("alice", small.id, now=NOW) is not None
        assert await store.get_inline("alice", small.id, now=NOW) is None

    async def test_get_inline_hides_an_expired_file_as_get_does(
        self, metadata: MetadataStore
    ) -> None:
        store = _inline(metadata)
        expiring = _small().replace(expires_at=NOW + 10)
        await store.insert_inline(expiring, b"soon gone")
        assert await store.get_inline("alice", expiring.id, now=NOW) == (expiring, b"soon gone")
        assert await store.get_inline("alice", expiring.id, now=NOW + 10) is None
