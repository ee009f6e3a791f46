"""Small files kept by the metadata store (`FilesService(inline_max=...)`): a file of at most
``inline_max`` bytes is written with its record, in one transaction, and never reaches the
storage; it reads, ranges, deletes, expires and fails exactly as a file in storage does."""

from __future__ import annotations

import hashlib
import os
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from openai_files import (
    FilesService,
    LocalStorage,
    MemoryMetadataStore,
    MemoryStorage,
    Policy,
    open_embedded,
)
from openai_files._inline import EMBEDDED_INLINE_MAX
from openai_files._pending_upload import RECORD_AFTER
from openai_files.errors import BackendUnavailable, FileNotFound, InvalidFile
from openai_files.ids import is_inline
from openai_files.metadata.base import FileRecord, InlineFiles, MetadataStore
from openai_files.metadata.sql import SQLMetadataStore
from openai_files.storage.encrypted import EncryptedStorage, Keyring, MasterKey
from openai_files.storage.tiered import TieredStorage
from openai_files.testing import FaultyMetadataStore, ManualClock

pytestmark = pytest.mark.anyio

OWNER = "alice"
HOUR = 3600
SMALL = b'{"custom_id": "1"}\n' * 10


@pytest.fixture(params=["memory", "sqlite"])
def metadata(request: pytest.FixtureRequest, tmp_path: Path) -> MetadataStore:
    if request.param == "memory":
        return MemoryMetadataStore()
    return SQLMetadataStore(f"sqlite+aiosqlite:///{tmp_path / 'files.db'}")


def stored_files(root: Path) -> list[Path]:
    """Every file the local storage holds, hidden ones included."""
    return [path for path in root.rglob("*") if path.is_file()]


async def read(files: FilesService, file_id: str, start: int = 0, end: int | None = None) -> bytes:
    content = await files.content(OWNER, file_id, start=start, end=end)
    return b"".join([chunk async for chunk in content.chunks])


async def record_of(files: FilesService, file_id: str) -> FileRecord:
    record = await files.metadata.get(OWNER, file_id, now=0, include_deleted=True)
    assert record is not None
    return record


async def kept(files: FilesService, storage_key: str) -> bytes | None:
    store = files.metadata
    assert isinstance(store, InlineFiles)
    return await store.read_inline(storage_key)


async def test_a_small_file_is_kept_with_its_record_and_reads_back_whole_and_in_ranges(
    metadata: MetadataStore, tmp_path: Path
) -> None:
    root = tmp_path / "files"
    async with FilesService(LocalStorage(root), metadata, inline_max=1024) as files:
        created = await files.create(OWNER, file=SMALL, filename="a.jsonl", purpose="user_data")
        assert stored_files(root) == []
        record = await record_of(files, created.id)
        assert is_inline(record.storage_key)
        assert record.sha256 == hashlib.sha256(SMALL).hexdigest()
        assert await kept(files, record.storage_key) == SMALL
        assert await read(files, created.id) == SMALL
        assert await read(files, created.id, start=3, end=17) == SMALL[3:17]
        assert await read(files, created.id, start=len(SMALL)) == b""
        assert await files.retrieve(OWNER, created.id) == created
        assert [f.id for f in (await files.list(OWNER)).data] == [created.id]


async def test_a_file_of_inline_max_bytes_is_kept_and_one_byte_more_goes_to_storage(
    metadata: MetadataStore, tmp_path: Path
) -> None:
    root = tmp_path / "files"
    async with FilesService(LocalStorage(root), metadata, inline_max=100) as files:

        async def in_chunks(data: bytes) -> AsyncIterator[bytes]:
            for offset in range(0, len(data), 7):
                yield data[offset : offset + 7]

        at_most = await files.create(
            OWNER, file=in_chunks(b"a" * 100), filename="a.txt", purpose="assistants"
        )
        assert stored_files(root) == []
        larger = await files.create(
            OWNER, file=in_chunks(b"b" * 101), filename="b.txt", purpose="assistants"
        )
        assert not is_inline((await record_of(files, larger.id)).storage_key)
        assert [path.read_bytes() for path in stored_files(root)] == [b"b" * 101]
        assert await read(files, at_most.id) == b"a" * 100
        assert await read(files, larger.id) == b"b" * 101


async def test_an_empty_file_is_kept_and_reads_back_empty(
    metadata: MetadataStore, tmp_path: Path
) -> None:
    async with FilesService(LocalStorage(tmp_path), metadata, inline_max=1024) as files:
        created = await files.create(OWNER, file=b"", filename="e.txt", purpose="assistants")
        assert created.bytes == 0
        assert await read(files, created.id) == b""


@pytest.mark.parametrize("soft_delete", [False, True], ids=["delete", "soft delete"])
async def test_a_delete_removes_the_kept_bytes(
    metadata: MetadataStore, tmp_path: Path, soft_delete: bool
) -> None:
    policy = Policy(soft_delete=soft_delete)
    async with FilesService(
        LocalStorage(tmp_path), metadata, policy=policy, inline_max=1024
    ) as files:
        created = await files.create(OWNER, file=SMALL, filename="a.jsonl", purpose="user_data")
        other = await files.create(OWNER, file=b"other", filename="b.txt", purpose="assistants")
        record = await record_of(files, created.id)
        await files.delete(OWNER, created.id)
        assert await kept(files, record.storage_key) is None
        with pytest.raises(FileNotFound):
            await files.content(OWNER, created.id)
        remains = await files.metadata.get(OWNER, created.id, now=0, include_deleted=True)
        assert (remains is not None) == soft_delete
        assert await read(files, other.id) == b"other"


async def test_the_sweeper_removes_the_kept_bytes_of_an_expired_file(
    metadata: MetadataStore, tmp_path: Path
) -> None:
    clock = ManualClock()
    async with FilesService(
        LocalStorage(tmp_path), metadata, clock=clock, inline_max=1024
    ) as files:
        created = await files.create(
            OWNER, file=SMALL, filename="a.jsonl", purpose="user_data", expires_after=HOUR
        )
        record = await record_of(files, created.id)
        clock.advance(HOUR)
        report = await files.sweep()
        assert report.expired == 1
        assert await kept(files, record.storage_key) is None
        assert await files.metadata.get(OWNER, created.id, now=0, include_deleted=True) is None


async def test_an_idempotent_create_keeps_the_first_files_bytes_only(
    metadata: MetadataStore, tmp_path: Path
) -> None:
    async with FilesService(LocalStorage(tmp_path), metadata, inline_max=1024) as files:
        first = await files.create(
            OWNER, file=b"first", filename="a.txt", purpose="assistants", idempotency_key="k"
        )
        again = await files.create(
            OWNER, file=b"again", filename="a.txt", purpose="assistants", idempotency_key="k"
        )
        assert again.id == first.id
        assert await read(files, first.id) == b"first"
        assert (await files.usage(OWNER)).bytes == len(b"first")


async def test_an_invalid_jsonl_file_is_refused_and_nothing_is_kept(tmp_path: Path) -> None:
    metadata = MemoryMetadataStore()
    async with FilesService(LocalStorage(tmp_path), metadata, inline_max=1024) as files:
        with pytest.raises(InvalidFile):
            await files.create(OWNER, file=b"not json\n", filename="a.jsonl", purpose="batch")
        assert (await files.usage(OWNER)).files == 0
        assert metadata._inline == {}
        assert stored_files(tmp_path) == []


async def test_a_failed_insert_leaves_neither_record_nor_bytes(tmp_path: Path) -> None:
    inner = MemoryMetadataStore()
    metadata = FaultyMetadataStore(inner)
    metadata.fail_insert_inline = True
    async with FilesService(LocalStorage(tmp_path), metadata, inline_max=1024) as files:
        with pytest.raises(BackendUnavailable):
            await files.create(OWNER, file=SMALL, filename="a.jsonl", purpose="user_data")
        assert inner._records == {}
        assert inner._inline == {}
        assert stored_files(tmp_path) == []


async def test_an_insert_whose_reply_was_lost_is_hidden_and_its_bytes_removed(
    tmp_path: Path,
) -> None:
    inner = MemoryMetadataStore()
    metadata = FaultyMetadataStore(inner)
    metadata.fail_insert_inline = 1
    metadata.lost_replies.add("insert_inline")
    async with FilesService(LocalStorage(tmp_path), metadata, inline_max=1024) as files:
        with pytest.raises(BackendUnavailable):
            await files.create(OWNER, file=SMALL, filename="a.jsonl", purpose="user_data")
        assert metadata.injected["insert_inline"] == 1
        assert (await files.list(OWNER)).data == []
        assert inner._inline == {}
        assert inner._records == {}


async def test_bytes_that_could_not_be_removed_are_removed_by_the_sweeper(
    tmp_path: Path,
) -> None:
    clock = ManualClock()
    inner = MemoryMetadataStore()
    metadata = FaultyMetadataStore(inner)
    async with FilesService(
        LocalStorage(tmp_path), metadata, clock=clock, inline_max=1024
    ) as files:
        created = await files.create(OWNER, file=SMALL, filename="a.jsonl", purpose="user_data")
        metadata.fail_delete_inline = True
        await files.delete(OWNER, created.id)  # gone for clients; the record stays deleting
        assert list(inner._inline.values()) == [SMALL]
        assert [record.state for record in inner._records.values()] == ["deleting"]
        metadata.heal()
        clock.advance(HOUR)
        await files.sweep(stale_after=60)
        assert inner._inline == {}
        assert inner._records == {}


@pytest.mark.parametrize("inline_max", [-1, RECORD_AFTER + 1])
async def test_inline_max_out_of_range_is_refused(tmp_path: Path, inline_max: int) -> None:
    with pytest.raises(ValueError, match="inline_max must be 0 to 262144 bytes"):
        FilesService(LocalStorage(tmp_path), MemoryMetadataStore(), inline_max=inline_max)


async def test_an_encrypting_storage_refuses_inline_files_even_as_a_tier(tmp_path: Path) -> None:
    keyring = Keyring([MasterKey("k1", os.urandom(32))])
    encrypted = EncryptedStorage(LocalStorage(tmp_path / "cold"), keyring)
    tiered = TieredStorage(LocalStorage(tmp_path / "hot"), encrypted, max_bytes=10**6)
    for storage in (encrypted, tiered):
        with pytest.raises(ValueError, match="unencrypted"):
            FilesService(storage, MemoryMetadataStore(), inline_max=1024)
    # Without inline files the same storages serve as before.
    assert FilesService(tiered, MemoryMetadataStore()).inline_max == 0


async def test_the_embedded_default_keeps_files_of_up_to_64_kib_in_sqlite(tmp_path: Path) -> None:
    async with open_embedded(tmp_path) as files:
        assert files.inline_max == EMBEDDED_INLINE_MAX == 64 * 1024
        small = await files.create(
            OWNER, file=b"s" * EMBEDDED_INLINE_MAX, filename="s.txt", purpose="assistants"
        )
        large = await files.create(
            OWNER, file=b"l" * (EMBEDDED_INLINE_MAX + 1), filename="l.txt", purpose="assistants"
        )
        assert [len(path.read_bytes()) for path in stored_files(tmp_path / "files")] == [
            EMBEDDED_INLINE_MAX + 1
        ]
        assert await read(files, small.id) == b"s" * EMBEDDED_INLINE_MAX
        assert await read(files, large.id) == b"l" * (EMBEDDED_INLINE_MAX + 1)
    async with open_embedded(tmp_path / "off", inline_max=0) as files:
        await files.create(OWNER, file=b"s", filename="s.txt", purpose="assistants")
        assert len(stored_files(tmp_path / "off" / "files")) == 1


class CountedReads(FaultyMetadataStore):
    """The fault wrapper over a memory store, counting its reads by name."""

    def __init__(self) -> None:
        super().__init__(MemoryMetadataStore())
        self.reads: Counter[str] = Counter()

    async def get(
        self, owner: str, file_id: str, *, now: int, include_deleted: bool = False
    ) -> FileRecord | None:
        self.reads["get"] += 1
        return await super().get(owner, file_id, now=now, include_deleted=include_deleted)

    async def read_inline(self, storage_key: str) -> bytes | None:
        self.reads["read_inline"] += 1
        return await super().read_inline(storage_key)

    async def get_inline(
        self, owner: str, file_id: str, *, now: int
    ) -> tuple[FileRecord, bytes | None] | None:
        self.reads["get_inline"] += 1
        return await super().get_inline(owner, file_id, now=now)


async def test_a_small_files_download_is_one_read_of_the_store(tmp_path: Path) -> None:
    metadata = CountedReads()
    async with FilesService(LocalStorage(tmp_path), metadata, inline_max=1024) as files:
        small = await files.create(OWNER, file=SMALL, filename="a.jsonl", purpose="user_data")
        large = await files.create(OWNER, file=b"l" * 2000, filename="l.txt", purpose="user_data")
        stat = await files.stat(OWNER, small.id)
        content = await files.content(OWNER, small.id, start=1, end=9, stat=stat)
        assert b"".join([chunk async for chunk in content.chunks]) == SMALL[1:9]
        assert metadata.reads == {"get_inline": 1}
        assert await read(files, large.id) == b"l" * 2000  # in storage: the same one read
        assert metadata.reads == {"get_inline": 2}
    # Without inline_max, a file kept earlier is still read: its record, then its bytes.
    metadata.reads.clear()
    async with FilesService(LocalStorage(tmp_path), metadata) as files:
        assert await read(files, small.id) == SMALL
        assert metadata.reads == {"get": 1, "read_inline": 1}


@pytest.mark.parametrize("order", ["in order", "out of order"])
async def test_a_small_uploads_api_file_assembled_through_the_service_is_kept_too(
    order: str,
) -> None:
    metadata = MemoryMetadataStore()
    async with FilesService(MemoryStorage(), metadata, inline_max=1024) as files:
        upload = await files.uploads.create(
            OWNER, filename="a.txt", purpose="assistants", bytes=10, mime_type="text/plain"
        )
        first = await files.uploads.add_part(OWNER, upload.id, _one(b"hello"))
        second = await files.uploads.add_part(OWNER, upload.id, _one(b"world"))
        ids = [first.id, second.id] if order == "in order" else [second.id, first.id]
        done = await files.uploads.complete(OWNER, upload.id, part_ids=ids)
        assert done.file is not None
        expected = b"helloworld" if order == "in order" else b"worldhello"
        assert await read(files, done.file.id) == expected
        assert list(metadata._inline.values()) == [expected]
        await files.delete(OWNER, done.file.id)
        assert metadata._inline == {}


async def _one(data: bytes) -> AsyncIterator[bytes]:
    yield data
