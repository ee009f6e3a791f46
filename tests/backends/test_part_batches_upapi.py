"""`PartBatches.remove_parts` on every built-in metadata store: the parts go, their bytes
leave their uploads' totals and their owners' usage as `remove_part` would take them out one
at a time, missing parts are no-ops, and batches larger than one transaction's share
(`PART_BATCH`) go whole."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from openai_files.metadata import _sql_uploads
from openai_files.metadata.base import MetadataStore, PartBatches, UploadRecord, Usage
from openai_files.testing._records import make_part, make_upload
from openai_files.testing.faults import FaultyMetadataStore

from ..databases import STORE_KINDS, metadata_store

pytestmark = pytest.mark.anyio


@pytest.fixture(params=STORE_KINDS)
async def metadata(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[MetadataStore]:
    async with metadata_store(request.param, tmp_path) as store:
        yield store


async def _totals(metadata: MetadataStore, upload: UploadRecord) -> tuple[int, int, int]:
    found = await metadata.get_upload(upload.owner, upload.id)
    assert found is not None
    return found.received, found.part_count, found.reserved


async def test_remove_parts_takes_out_what_each_part_counted(metadata: MetadataStore) -> None:
    assert isinstance(metadata, PartBatches)
    alice, bob = make_upload("alice", size=1000), make_upload("bob", size=1000)
    other = make_upload("alice", size=1000)
    parts = {}
    for upload in (alice, bob, other):
        await metadata.create_upload(upload)
        parts[upload.id] = [make_part(upload, size) for size in (10, 20, 30)]
        for part in parts[upload.id]:
            assert await metadata.add_part(part) == "added"
    assert await metadata.usage("alice") == Usage(files=0, bytes=120, open_uploads=2)
    # All of alice's first upload, one part of bob's, and a part that does not exist.
    removed = [part.id for part in parts[alice.id]] + [parts[bob.id][1].id, "part_missing"]
    await metadata.remove_parts(removed)
    assert await _totals(metadata, alice) == (0, 0, 0)
    assert await _totals(metadata, bob) == (40, 2, 40)
    assert await _totals(metadata, other) == (60, 3, 60)
    assert await metadata.usage("alice") == Usage(files=0, bytes=60, open_uploads=2)
    assert await metadata.usage("bob") == Usage(files=0, bytes=40, open_uploads=1)
    assert [p.id for p in await metadata.get_parts("alice", alice.id)] == []
    left = {p.id for p in await metadata.get_parts("bob", bob.id)}
    assert left == {parts[bob.id][0].id, parts[bob.id][2].id}
    await metadata.remove_parts(removed)  # again: every part is missing now, a no-op
    await metadata.remove_parts([])
    assert await _totals(metadata, bob) == (40, 2, 40)
    assert await metadata.usage("alice") == Usage(files=0, bytes=60, open_uploads=2)


async def test_more_parts_than_one_batch_all_go(
    metadata: MetadataStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert isinstance(metadata, PartBatches)
    monkeypatch.setattr(_sql_uploads, "PART_BATCH", 3)
    upload = make_upload(size=1000)
    await metadata.create_upload(upload)
    parts = [make_part(upload, 7) for _ in range(8)]
    for part in parts:
        assert await metadata.add_part(part) == "added"
    await metadata.remove_parts([part.id for part in parts[:7]])
    assert await _totals(metadata, upload) == (7, 1, 7)
    assert [p.id for p in await metadata.get_parts("alice", upload.id)] == [parts[7].id]
    assert (await metadata.usage("alice")).bytes == 7


async def test_the_fault_wrapper_offers_it_over_every_store(metadata: MetadataStore) -> None:
    faulty = FaultyMetadataStore(metadata)
    assert isinstance(faulty, PartBatches)
    upload = make_upload(size=100)
    await faulty.create_upload(upload)
    part = make_part(upload, 10)
    assert await faulty.add_part(part) == "added"
    await faulty.remove_parts([part.id])
    assert await _totals(faulty, upload) == (0, 0, 0)
