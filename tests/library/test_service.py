"""`FilesService` used as a library, with no HTTP: effects, ordering, failures and expiry."""

from __future__ import annotations

import hashlib
import os
from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import pytest

from openai_files import (
    BackendUnavailable,
    FileNotFound,
    FilesService,
    FileTooLarge,
    InvalidRequest,
    LocalStorage,
    MemoryMetadataStore,
    MemoryStorage,
    Policy,
    SQLMetadataStore,
)
from openai_files.testing import ManualClock

from ..support import BATCH_LINE, stored_files

pytestmark = pytest.mark.anyio


async def stream(data: bytes, size: int = 65536) -> AsyncIterator[bytes]:
    for offset in range(0, len(data), size):
        yield data[offset : offset + size]


async def test_create_streams_an_async_iterable_and_content_reads_it_back(
    local_service: FilesService,
) -> None:
    data = os.urandom(2_500_000)
    created = await local_service.create(
        "alice", file=stream(data), filename="d.bin", purpose="assistants"
    )
    content = await local_service.content("alice", created.id)
    assert (content.start, content.end, content.sha256) == (
        0,
        len(data),
        hashlib.sha256(data).hexdigest(),
    )
    assert b"".join([chunk async for chunk in content.chunks]) == data
    ranged = await local_service.content("alice", created.id, start=10, end=20)
    assert b"".join([chunk async for chunk in ranged.chunks]) == data[10:20]


async def test_an_upload_is_invisible_until_its_bytes_are_stored(
    memory_service: FilesService,
) -> None:
    gate = anyio.Event()
    seen_during: list[int] = []

    async def slow() -> AsyncIterator[bytes]:
        yield b"first"
        await gate.wait()
        yield b"second"

    async with anyio.create_task_group() as group:
        group.start_soon(
            lambda: memory_service.create("alice", file=slow(), filename="s", purpose="vision")
        )
        await anyio.sleep(0.01)
        seen_during.append(len((await memory_service.list("alice")).data))
        gate.set()
    assert seen_during == [0]
    assert len((await memory_service.list("alice")).data) == 1


async def test_an_error_while_streaming_leaves_no_bytes_and_no_record(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path / "blobs")
    metadata = MemoryMetadataStore()
    service = FilesService(storage, metadata)

    async def broken() -> AsyncIterator[bytes]:
        yield os.urandom(3 * 1024 * 1024)
        raise ConnectionError("client went away")

    with pytest.raises(ConnectionError):
        await service.create("alice", file=broken(), filename="b", purpose="assistants")
    assert stored_files(storage.root) == []
    assert metadata._records == {}


async def test_the_size_limit_is_enforced_while_streaming() -> None:
    service = FilesService(MemoryStorage(), MemoryMetadataStore(), policy=Policy(max_file_size=10))
    pulled = 0

    async def endless() -> AsyncIterator[bytes]:
        nonlocal pulled
        while True:
            pulled += 1
            yield b"12345"

    with pytest.raises(FileTooLarge):
        await service.create("alice", file=endless(), filename="e", purpose="assistants")
    assert pulled == 3
    assert (await service.list("alice")).data == []


async def test_bad_purpose_and_expiry_are_refused_before_any_byte_is_read(
    memory_service: FilesService,
) -> None:
    async def never() -> AsyncIterator[bytes]:
        raise AssertionError("the body must not be read")
        yield b""  # pragma: no cover

    with pytest.raises(InvalidRequest) as caught:
        await memory_service.create("a", file=never(), filename="x", purpose="batch_output")
    assert caught.value.param == "purpose"
    with pytest.raises(InvalidRequest) as caught:
        await memory_service.create(
            "a", file=never(), filename="x", purpose="batch", expires_after=3599
        )
    assert caught.value.param == "expires_after[seconds]"


async def test_a_file_expires_exactly_at_expires_at() -> None:
    clock = ManualClock(1_800_000_000.0)
    service = FilesService(MemoryStorage(), MemoryMetadataStore(), clock=clock)
    created = await service.create(
        "alice", file=b"x", filename="x", purpose="user_data", expires_after=3600
    )
    assert created.expires_at == int(clock.now) + 3600
    clock.now += 3599
    assert (await service.retrieve("alice", created.id)).id == created.id
    clock.now += 1
    for call in (service.retrieve, service.content, service.delete):
        with pytest.raises(FileNotFound):
            await call("alice", created.id)
    assert (await service.list("alice")).data == []


async def test_batch_files_expire_after_30_days_by_default_and_others_never(
    memory_service: FilesService,
) -> None:
    batch = await memory_service.create("a", file=BATCH_LINE, filename="b.jsonl", purpose="batch")
    other = await memory_service.create("a", file=b"{}", filename="o.txt", purpose="assistants")
    assert batch.expires_at == batch.created_at + 30 * 86400
    assert other.expires_at is None


class FailingDeletes(MemoryStorage):
    async def delete(self, key: str) -> None:
        raise BackendUnavailable("storage is down")


async def test_a_failed_blob_removal_keeps_a_deleting_record_to_retry() -> None:
    storage, metadata = FailingDeletes(), MemoryMetadataStore()
    service = FilesService(storage, metadata)
    created = await service.create("alice", file=b"keep", filename="k", purpose="vision")
    deleted = await service.delete("alice", created.id)
    assert deleted.deleted is True
    with pytest.raises(FileNotFound):
        await service.retrieve("alice", created.id)
    assert [r.state for r in metadata._records.values()] == ["deleting"]
    assert storage.keys() != []


async def test_list_rejects_bad_parameters_with_the_parameter_named(
    memory_service: FilesService,
) -> None:
    for kwargs, param in [
        ({"limit": 0}, "limit"),
        ({"limit": 10_001}, "limit"),
        ({"order": "sideways"}, "order"),
        ({"after": "file-nope"}, "after"),
    ]:
        with pytest.raises(InvalidRequest) as caught:
            await memory_service.list("alice", **kwargs)  # type: ignore[arg-type]
        assert caught.value.param == param


async def test_a_deleted_files_id_still_works_as_a_cursor(sqlite_url: str) -> None:
    service = FilesService(MemoryStorage(), SQLMetadataStore(sqlite_url))
    async with service:
        ids = [
            (await service.create("a", file=b"x", filename=f"{i}", purpose="vision")).id
            for i in range(5)
        ]
        await service.delete("a", ids[2])
        page = await service.list("a", order="asc", after=ids[2])
        assert [f.id for f in page.data] == ids[3:]


def test_list_offset_needs_a_store_that_pages_by_offset() -> None:
    class CursorsOnly:
        """A store without the optional OffsetPaging methods."""

    with pytest.raises(ValueError, match="needs an OffsetPaging store"):
        FilesService(MemoryStorage(), CursorsOnly(), policy=Policy(list_offset=True))  # type: ignore[arg-type]


async def deferred_service(tmp_path: Path) -> FilesService:
    return FilesService(
        LocalStorage(tmp_path / "blobs"),
        SQLMetadataStore(f"sqlite+aiosqlite:///{tmp_path / 'files.db'}"),
        policy=Policy(validation="deferred"),
    )


async def test_deferred_validation_stores_jsonl_unchecked_until_validate_checks_it(
    tmp_path: Path,
) -> None:
    async with await deferred_service(tmp_path) as service:
        bad = await service.create(
            "alice", file=stream(BATCH_LINE + b"not json\n"), filename="in.jsonl", purpose="batch"
        )
        good = await service.create(
            "alice", file=stream(BATCH_LINE), filename="in.jsonl", purpose="batch"
        )
        notes = await service.create(
            "alice", file=stream(b"hello"), filename="a.txt", purpose="assistants"
        )
        assert (bad.status, good.status, notes.status) == ("uploaded", "uploaded", "processed")
        checked = await service.validate("alice", bad.id)
        assert checked.status == "error"
        assert str(checked.status_details).startswith("Line 2")
        assert (await service.retrieve("alice", bad.id)) == checked
        assert (await service.validate("alice", good.id)).status == "processed"
        assert await service.validate("alice", bad.id) == checked  # checked once
        assert await service.validate("alice", notes.id) == notes  # nothing to check
        with pytest.raises(FileNotFound):
            await service.validate("bob", good.id)


def test_deferred_validation_needs_a_store_that_records_statuses() -> None:
    class NoStatuses:
        """A store without the optional StatusUpdates method."""

    with pytest.raises(ValueError, match="needs a StatusUpdates store"):
        FilesService(MemoryStorage(), NoStatuses(), policy=Policy(validation="deferred"))  # type: ignore[arg-type]
