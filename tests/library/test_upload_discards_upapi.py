"""A completed or cancelled upload forgets its parts in one `PartBatches.remove_parts` call,
and removes the unfinished file its in-order parts share once; the sweeper does the same for
the parts of closed uploads. Observed through the fault-injection wrapper (no fault on),
recording the calls, over SQLite and the memory store, with every byte checked."""

from __future__ import annotations

import builtins
import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from openai_files import FilesService, LocalStorage, MemoryMetadataStore, SQLMetadataStore
from openai_files.metadata.base import MetadataStore
from openai_files.testing import FaultyMetadataStore, ManualClock

from ..support import stored_files

pytestmark = pytest.mark.anyio

T0 = 1_750_000_000


class RecordingMetadata(FaultyMetadataStore):
    """Records the part removals asked of it."""

    def __init__(self, inner: MetadataStore) -> None:
        super().__init__(inner)
        self.removals: list[tuple[str, int]] = []

    async def remove_part(self, part_id: str) -> None:
        self.removals.append(("remove_part", 1))
        await super().remove_part(part_id)

    async def remove_parts(self, part_ids: builtins.list[str]) -> None:
        self.removals.append(("remove_parts", len(part_ids)))
        await super().remove_parts(part_ids)


class CountingStorage(LocalStorage):
    """Counts the discards of unfinished objects."""

    discards = 0

    async def discard(self, key: str) -> None:
        self.discards += 1
        await super().discard(key)


@pytest.fixture(params=["sqlite", "memory"])
def metadata(request: pytest.FixtureRequest, tmp_path: Path) -> MetadataStore:
    """A fresh store; the service over it closes it."""
    if request.param == "sqlite":
        return SQLMetadataStore(f"sqlite+aiosqlite:///{tmp_path / 'files.db'}")
    return MemoryMetadataStore()


async def _chunks(data: bytes) -> AsyncIterator[bytes]:
    for start in range(0, len(data), 65536):
        yield data[start : start + 65536]


async def _upload(service: FilesService, parts: list[bytes]) -> tuple[str, list[str]]:
    upload = await service.uploads.create(
        "alice",
        filename="a.bin",
        purpose="assistants",
        bytes=sum(map(len, parts)),
        mime_type="application/octet-stream",
    )
    ids = [(await service.uploads.add_part("alice", upload.id, _chunks(p))).id for p in parts]
    return upload.id, ids


async def test_completion_forgets_every_part_in_one_call(
    tmp_path: Path, metadata: MetadataStore
) -> None:
    storage = CountingStorage(tmp_path / "blobs")
    recording = RecordingMetadata(metadata)
    parts = [os.urandom(200_000) for _ in range(5)] + [os.urandom(123)]
    async with FilesService(storage, recording, clock=ManualClock(T0)) as service:
        upload_id, ids = await _upload(service, parts)
        done = await service.uploads.complete("alice", upload_id, part_ids=ids)
        assert done.status == "completed"
        assert done.file is not None
        assert recording.removals == [("remove_parts", len(parts))]
        assert storage.discards == 1  # the one file the in-order parts shared
        assert await metadata.get_parts("alice", upload_id) == []
        assert (await metadata.usage("alice")).bytes == sum(map(len, parts))  # the file's
        content = await service.content("alice", done.file.id)
        assert b"".join([chunk async for chunk in content.chunks]) == b"".join(parts)
    assert len(stored_files(storage.root)) == 1


async def test_out_of_order_parts_still_assemble_and_all_go_in_one_call(
    tmp_path: Path, metadata: MetadataStore
) -> None:
    storage = CountingStorage(tmp_path / "blobs")
    recording = RecordingMetadata(metadata)
    parts = [os.urandom(100_000 + n) for n in range(4)]
    async with FilesService(storage, recording, clock=ManualClock(T0)) as service:
        upload_id, ids = await _upload(service, parts)
        order = [3, 0, 2, 1]
        done = await service.uploads.complete("alice", upload_id, part_ids=[ids[n] for n in order])
        assert done.file is not None
        assert recording.removals == [("remove_parts", 4)]
        content = await service.content("alice", done.file.id)
        data = b"".join([chunk async for chunk in content.chunks])
        assert data == b"".join(parts[n] for n in order)
        assert await metadata.get_parts("alice", upload_id) == []
        assert (await metadata.usage("alice")).bytes == len(data)
    assert len(stored_files(storage.root)) == 1


async def test_a_cancelled_upload_forgets_its_parts_in_one_call(
    tmp_path: Path, metadata: MetadataStore
) -> None:
    storage = CountingStorage(tmp_path / "blobs")
    recording = RecordingMetadata(metadata)
    async with FilesService(storage, recording, clock=ManualClock(T0)) as service:
        upload_id, _ = await _upload(service, [os.urandom(1000) for _ in range(3)])
        cancelled = await service.uploads.cancel("alice", upload_id)
        assert cancelled.status == "cancelled"
        assert recording.removals == [("remove_parts", 3)]
        assert storage.discards == 1
        assert await metadata.get_parts("alice", upload_id) == []
        assert (await metadata.usage("alice")).bytes == 0
    assert stored_files(storage.root) == []
