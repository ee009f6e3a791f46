"""A small file is recorded in one step: its bytes stored, then its record inserted ``active``
in one transaction with its quota and idempotency key. A file past `RECORD_AFTER` bytes
streams with a ``pending`` record as before. Whatever fails, no record is visible without its
bytes, and bytes without a record are removed (or left to the orphan sweep)."""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator

import pytest

from openai_files import FilesService, MemoryMetadataStore, MemoryStorage, Policy
from openai_files._pending_upload import RECORD_AFTER
from openai_files.errors import BackendUnavailable, QuotaExceeded
from openai_files.metadata.base import FileRecord, Quota, Usage
from openai_files.testing import FaultyMetadataStore, FaultyStorage, ManualClock

pytestmark = pytest.mark.anyio

OWNER = "alice"


class CountingStore(FaultyMetadataStore):
    """The fault wrapper over a memory store, counting the writes of a create by name (and
    the state of each inserted record)."""

    def __init__(self) -> None:
        super().__init__(MemoryMetadataStore())
        self.writes: Counter[str] = Counter()

    async def insert(
        self,
        record: FileRecord,
        *,
        quota: Quota | None = None,
        idempotency_key: str | None = None,
        key_since: int = 0,
    ) -> str:
        self.writes[f"insert {record.state}"] += 1
        return await super().insert(
            record, quota=quota, idempotency_key=idempotency_key, key_since=key_since
        )

    async def reserve(self, owner: str, file_id: str, size: int, *, quota: Quota | None) -> bool:
        self.writes["reserve"] += 1
        return await super().reserve(owner, file_id, size, quota=quota)

    async def commit(
        self, record: FileRecord, *, idempotency_key: str | None = None, key_since: int = 0
    ) -> str:
        self.writes["commit"] += 1
        return await super().commit(record, idempotency_key=idempotency_key, key_since=key_since)

    def records(self) -> list[FileRecord]:
        inner = self.inner
        assert isinstance(inner, MemoryMetadataStore)
        return list(inner._records.values())


def service(
    metadata: CountingStore, *, quota: Quota | None = None, storage: MemoryStorage | None = None
) -> tuple[FilesService, MemoryStorage, ManualClock]:
    clock = ManualClock()
    storage = storage or MemoryStorage(clock=clock)
    policy = Policy(quota=quota)
    return FilesService(storage, metadata, policy=policy, clock=clock), storage, clock


async def chunks(data: bytes, size: int = 64 * 1024) -> AsyncIterator[bytes]:
    for offset in range(0, len(data), size):
        yield data[offset : offset + size]


async def test_a_small_file_is_one_insert_of_an_active_record_even_under_a_byte_quota() -> None:
    metadata = CountingStore()
    files, storage, _ = service(metadata, quota=Quota(max_files=10, max_bytes=10**9))
    created = await files.create(OWNER, file=b"x" * 1024, filename="a.txt", purpose="assistants")
    assert metadata.writes == {"insert active": 1}
    assert await files.retrieve(OWNER, created.id) == created
    assert await metadata.usage(OWNER) == Usage(files=1, bytes=1024)
    assert len(storage.keys()) == 1


async def test_a_file_past_record_after_streams_with_a_pending_record_committed_at_the_end() -> (
    None
):
    metadata = CountingStore()
    files, _, _ = service(metadata, quota=Quota(max_bytes=10**9))
    data = b"y" * (RECORD_AFTER + 1)
    created = await files.create(OWNER, file=chunks(data), filename="a.txt", purpose="assistants")
    assert metadata.writes == {"insert pending": 1, "reserve": 1, "commit": 1}
    assert created.bytes == len(data)
    assert await metadata.usage(OWNER) == Usage(files=1, bytes=len(data))


async def test_a_file_of_exactly_record_after_bytes_is_recorded_in_one_step() -> None:
    metadata = CountingStore()
    files, _, _ = service(metadata)
    data = b"z" * RECORD_AFTER
    await files.create(OWNER, file=chunks(data), filename="a.txt", purpose="assistants")
    assert metadata.writes == {"insert active": 1}


async def test_a_small_upload_that_dies_before_it_finishes_leaves_bytes_the_orphan_sweep_removes() -> (  # noqa: E501
    None
):
    metadata = CountingStore()
    files, storage, clock = service(metadata, quota=Quota(max_files=1))
    upload = await files.begin_upload(OWNER, filename="dead.txt", purpose="assistants")
    await upload.write(chunks(b"stored, never recorded"))
    # The process "dies" here: neither finish nor abort.
    assert metadata.writes == {}
    assert metadata.records() == []
    assert await metadata.usage(OWNER) == Usage(files=0, bytes=0)
    assert storage.keys() == [upload.record.storage_key]
    await files.create(OWNER, file=b"fits", filename="b.txt", purpose="assistants")
    assert await files.sweep_orphans(grace=60) == 0  # younger than the grace
    clock.advance(61)
    assert await files.sweep_orphans(grace=60) == 1
    assert len(storage.keys()) == 1


async def test_a_small_file_over_the_quota_is_refused_and_its_bytes_removed() -> None:
    metadata = CountingStore()
    files, storage, _ = service(metadata, quota=Quota(max_files=1, max_bytes=100))
    kept = await files.create(OWNER, file=b"k" * 60, filename="a.txt", purpose="assistants")
    with pytest.raises(QuotaExceeded):
        await files.create(OWNER, file=b"b" * 41, filename="b.txt", purpose="assistants")
    with pytest.raises(QuotaExceeded):
        await files.create(OWNER, file=b"c", filename="c.txt", purpose="assistants")
    assert [r.id for r in metadata.records()] == [kept.id]
    assert len(storage.keys()) == 1
    assert await metadata.usage(OWNER) == Usage(files=1, bytes=60)


async def test_a_retried_small_create_under_one_key_answers_the_first_file_and_keeps_one_blob() -> (
    None
):
    metadata = CountingStore()
    files, storage, _ = service(metadata)
    first = await files.create(
        OWNER, file=b"once", filename="a.txt", purpose="assistants", idempotency_key="k"
    )
    again = await files.create(
        OWNER, file=b"once", filename="a.txt", purpose="assistants", idempotency_key="k"
    )
    assert again == first
    assert len(storage.keys()) == 1
    assert [r.id for r in metadata.records()] == [first.id]


async def test_a_failed_one_step_insert_stores_nothing() -> None:
    metadata = CountingStore()
    files, storage, _ = service(metadata)
    metadata.fail_insert = 1
    with pytest.raises(BackendUnavailable):
        await files.create(OWNER, file=b"lost", filename="a.txt", purpose="assistants")
    assert metadata.records() == []
    assert storage.keys() == []


async def test_a_one_step_insert_whose_reply_is_lost_leaves_no_file_and_no_bytes() -> None:
    # The insert took effect; only its reply was lost. The file must not stay visible (the
    # client was told it failed), and its bytes must not outlive it.
    metadata = CountingStore()
    files, storage, _ = service(metadata)
    metadata.fail_insert, metadata.lost_replies = 1, {"insert"}
    with pytest.raises(BackendUnavailable):
        await files.create(OWNER, file=b"lost", filename="a.txt", purpose="assistants")
    assert (await files.list(OWNER)).data == []
    assert [r.state for r in metadata.records()] == []
    assert storage.keys() == []
    assert await metadata.usage(OWNER) == Usage(files=0, bytes=0)


async def test_a_small_file_whose_bytes_cannot_be_removed_after_a_refusal_is_left_to_the_orphan_sweep() -> (  # noqa: E501
    None
):
    metadata = CountingStore()
    clock = ManualClock()
    storage = FaultyStorage(MemoryStorage(clock=clock))
    files = FilesService(storage, metadata, policy=Policy(quota=Quota(max_files=0)), clock=clock)
    storage.fail_delete = True
    with pytest.raises(QuotaExceeded):
        await files.create(OWNER, file=b"refused", filename="a.txt", purpose="assistants")
    assert metadata.records() == []
    storage.heal()
    clock.advance(61)
    assert await files.sweep_orphans(grace=60) == 1


async def test_an_uploads_api_file_whose_parts_fill_the_byte_quota_completes() -> None:
    # Its parts count against the byte quota until they are discarded, after the file is
    # recorded: the file's own bytes are not checked against the quota a second time.
    metadata = CountingStore()
    files, _, _ = service(metadata, quota=Quota(max_bytes=1000))
    upload = await files.uploads.create(
        OWNER, filename="a.bin", purpose="assistants", bytes=1000, mime_type="text/plain"
    )
    part = await files.uploads.add_part(OWNER, upload.id, chunks(b"p" * 1000))
    done = await files.uploads.complete(OWNER, upload.id, part_ids=[part.id])
    assert done.status == "completed"
    assert done.file is not None
    assert done.file.bytes == 1000
    assert metadata.writes["insert active"] == 1
    assert await metadata.usage(OWNER) == Usage(files=1, bytes=1000)
