"""The metadata conformance cases about the Uploads API: uploads, their parts, and what they
count in the owner's usage."""

from __future__ import annotations

import dataclasses

import anyio
import pytest

from ..errors import QuotaExceeded
from ..metadata.base import MetadataStore, PartBatches, Quota, UploadRecord, Usage
from ._records import T0, make_part, make_record, make_upload

__all__ = ["UploadRecordConformance"]


class UploadRecordConformance:
    """What uploads and their parts count: running totals, usage, reservations and bounds."""

    async def test_an_uploads_parts_count_in_its_owners_bytes_until_they_are_discarded(
        self, metadata: MetadataStore
    ) -> None:
        upload = make_upload(size=100)
        await metadata.create_upload(upload)
        assert await metadata.usage("alice") == Usage(files=0, bytes=0, open_uploads=1)
        assert await metadata.reserve_upload("alice", upload.id, 64, quota=None)
        assert await metadata.usage("alice") == Usage(files=0, bytes=64, open_uploads=1)
        first = make_part(upload, 40)  # reserved 64, used 40: 24 given back
        assert await metadata.add_part(first, reserved=64) == "added"
        second = make_part(upload, 30)  # reserved nothing (no byte quota): counted as added
        assert await metadata.add_part(second) == "added"
        assert await metadata.usage("alice") == Usage(files=0, bytes=70, open_uploads=1)
        found = await metadata.get_upload("alice", upload.id)
        assert found is not None
        assert (found.received, found.part_count, found.reserved) == (70, 2, 70)
        assert await metadata.move_upload(
            "alice", upload.id, from_states=("pending",), to="cancelled"
        )
        # Closed: no longer open, but the parts count until their bytes are discarded.
        assert await metadata.usage("alice") == Usage(files=0, bytes=70, open_uploads=0)
        await metadata.remove_part(first.id)
        await metadata.remove_part(first.id)  # a missing part: a no-op
        assert await metadata.usage("alice") == Usage(files=0, bytes=30, open_uploads=0)
        await metadata.remove_part(second.id)
        assert await metadata.usage("alice") == Usage(files=0, bytes=0, open_uploads=0)
        found = await metadata.get_upload("alice", upload.id)
        assert found is not None
        assert (found.received, found.part_count, found.reserved) == (0, 0, 0)

    async def test_parts_forgotten_in_one_batch_count_out_as_one_at_a_time(
        self, metadata: MetadataStore
    ) -> None:
        if not isinstance(metadata, PartBatches):
            pytest.skip(f"{type(metadata).__name__} forgets parts one at a time (optional)")
        first, second = make_upload(size=100), make_upload(size=100)
        parts = []
        for upload in (first, second):
            await metadata.create_upload(upload)
            for size in (10, 20):
                part = make_part(upload, size)
                assert await metadata.add_part(part) == "added"
                parts.append(part)
        assert await metadata.usage("alice") == Usage(files=0, bytes=60, open_uploads=2)
        # Both parts of the first upload, one of the second, and one that does not exist.
        await metadata.remove_parts([parts[0].id, parts[1].id, parts[3].id, "part_missing"])
        assert await metadata.usage("alice") == Usage(files=0, bytes=10, open_uploads=2)
        assert await metadata.get_parts("alice", first.id) == []
        assert [p.id for p in await metadata.get_parts("alice", second.id)] == [parts[2].id]
        found = await metadata.get_upload("alice", second.id)
        assert found is not None
        assert (found.received, found.part_count, found.reserved) == (10, 1, 10)
        await metadata.remove_parts([])  # nothing to do
        await metadata.remove_parts([parts[0].id])  # missing by now: a no-op
        assert await metadata.usage("alice") == Usage(files=0, bytes=10, open_uploads=2)

    async def test_closing_an_upload_gives_back_what_parts_on_their_way_reserved(
        self, metadata: MetadataStore
    ) -> None:
        uploads = [make_upload(size=100), make_upload(size=100), make_upload(size=100)]
        for upload in uploads:
            await metadata.create_upload(upload)
            assert await metadata.reserve_upload("alice", upload.id, 50, quota=None)
            assert await metadata.add_part(make_part(upload, 20), reserved=20) == "added"
        assert await metadata.usage("alice") == Usage(files=0, bytes=150, open_uploads=3)
        completing, cancelled, expiring = uploads
        assert await metadata.move_upload(
            "alice", completing.id, from_states=("pending",), to="completing"
        )
        assert await metadata.usage("alice") == Usage(files=0, bytes=150, open_uploads=3)
        assert await metadata.move_upload(
            "alice", completing.id, from_states=("completing",), to="completed", file_id="file-x"
        )
        assert await metadata.move_upload(
            "alice", cancelled.id, from_states=("pending",), to="cancelled"
        )
        assert await metadata.usage("alice") == Usage(files=0, bytes=90, open_uploads=1)
        assert await metadata.expire_uploads(now=expiring.expires_at - 1) == 0
        assert await metadata.expire_uploads(now=expiring.expires_at) == 1
        assert await metadata.usage("alice") == Usage(files=0, bytes=60, open_uploads=0)
        # A part on its way gives back its reservation once it is refused; closing did already.
        await metadata.release_upload("alice", expiring.id, 30)
        late = make_part(expiring, 10)
        assert await metadata.add_part(late, reserved=10) == "not_pending"
        assert not await metadata.reserve_upload("alice", expiring.id, 1, quota=None)
        assert await metadata.usage("alice") == Usage(files=0, bytes=60, open_uploads=0)
        assert len(await metadata.finished_parts(limit=10)) == 3

    async def test_a_reservation_given_back_leaves_the_usage_as_it_was(
        self, metadata: MetadataStore
    ) -> None:
        upload = make_upload(size=100)
        await metadata.create_upload(upload)
        assert await metadata.reserve_upload("alice", upload.id, 80, quota=None)
        await metadata.release_upload("alice", upload.id, 80)
        assert await metadata.usage("alice") == Usage(files=0, bytes=0, open_uploads=1)
        assert not await metadata.reserve_upload("bob", upload.id, 1, quota=None)
        assert not await metadata.reserve_upload("alice", "upload_missing", 1, quota=None)
        assert await metadata.usage("bob") == Usage(files=0, bytes=0)

    async def test_a_part_is_refused_past_the_declared_bytes_or_the_part_limit(
        self, metadata: MetadataStore
    ) -> None:
        upload = make_upload(size=100)
        await metadata.create_upload(upload)
        assert await metadata.add_part(make_part(upload, 60), max_parts=2) == "added"
        assert await metadata.reserve_upload("alice", upload.id, 41, quota=None)
        too_big = make_part(upload, 41)
        assert await metadata.add_part(too_big, reserved=41) == "over_declared_bytes"
        assert await metadata.usage("alice") == Usage(files=0, bytes=60, open_uploads=1)
        assert await metadata.add_part(make_part(upload, 10), max_parts=2) == "added"
        assert await metadata.add_part(make_part(upload, 10), max_parts=2) == "over_part_limit"
        assert await metadata.add_part(make_part(upload, 30), max_parts=3) == "added"
        assert sorted(p.bytes for p in await metadata.get_parts("alice", upload.id)) == [
            10,
            30,
            60,
        ]
        found = await metadata.get_upload("alice", upload.id)
        assert found is not None
        assert (found.received, found.part_count, found.reserved) == (100, 3, 100)
        assert await metadata.usage("alice") == Usage(files=0, bytes=100, open_uploads=1)
        foreign = dataclasses.replace(make_part(upload, 0), owner="bob")
        assert await metadata.add_part(foreign) == "not_pending"

    async def test_the_running_totals_equal_the_sum_of_the_parts(
        self, metadata: MetadataStore
    ) -> None:
        upload = make_upload(size=10_000)
        await metadata.create_upload(upload)
        sizes = [(index * 37) % 101 + 1 for index in range(60)]
        parts = [make_part(upload, size) for size in sizes]
        for part in parts:
            assert await metadata.add_part(part) == "added"
        for part in parts[::7]:
            await metadata.remove_part(part.id)
        stored = await metadata.get_parts("alice", upload.id)
        found = await metadata.get_upload("alice", upload.id)
        assert found is not None
        assert found.received == found.reserved == sum(part.bytes for part in stored)
        assert found.part_count == len(stored)
        assert (await metadata.usage("alice")).bytes == found.received

    async def test_concurrent_parts_never_pass_the_declared_bytes(
        self, metadata: MetadataStore
    ) -> None:
        upload = make_upload(size=50)
        await metadata.create_upload(upload)
        outcomes: list[str] = []

        async def send() -> None:
            outcomes.append(await metadata.add_part(make_part(upload, 10)))

        async with anyio.create_task_group() as group:
            for _ in range(12):
                group.start_soon(send)
        assert sorted(outcomes) == ["added"] * 5 + ["over_declared_bytes"] * 7
        assert (await metadata.usage("alice")).bytes == 50

    async def test_concurrent_part_reservations_never_pass_the_quota(
        self, metadata: MetadataStore
    ) -> None:
        quota = Quota(max_bytes=1000)
        await metadata.insert(make_record().replace(bytes=100), quota=quota)
        uploads = [make_upload(size=1000) for _ in range(6)]
        for upload in uploads:
            await metadata.create_upload(upload)
        granted: list[str] = []

        async def take(upload: UploadRecord) -> None:
            for _ in range(5):
                if await metadata.reserve_upload("alice", upload.id, 60, quota=quota):
                    granted.append(upload.id)

        async with anyio.create_task_group() as group:
            for upload in uploads:
                group.start_soon(take, upload)
        assert len(granted) == 900 // 60
        assert (await metadata.usage("alice")).bytes == 100 + 60 * (900 // 60)
        with pytest.raises(QuotaExceeded):  # parts' bytes count against files too
            await metadata.insert(make_record(created_us=T0 + 1).replace(bytes=61), quota=quota)

    async def test_exactly_the_bound_of_concurrent_upload_creates_succeeds(
        self, metadata: MetadataStore
    ) -> None:
        created: list[str] = []
        refused: list[QuotaExceeded] = []

        async def create() -> None:
            upload = make_upload()
            try:
                await metadata.create_upload(upload, max_open=5)
            except QuotaExceeded as exc:
                refused.append(exc)
            else:
                created.append(upload.id)

        async with anyio.create_task_group() as group:
            for _ in range(20):
                group.start_soon(create)
        assert (len(created), len(refused)) == (5, 15)
        assert "5" in str(refused[0])
        assert await metadata.usage("alice") == Usage(files=0, bytes=0, open_uploads=5)
        await metadata.create_upload(make_upload("bob"), max_open=5)  # a bound per owner
        assert await metadata.move_upload(
            "alice", created[0], from_states=("pending",), to="cancelled"
        )
        await metadata.create_upload(make_upload(), max_open=5)
        with pytest.raises(QuotaExceeded):
            await metadata.create_upload(make_upload(), max_open=5)
        await metadata.create_upload(make_upload())  # no bound
        assert await metadata.usage("alice") == Usage(files=0, bytes=0, open_uploads=6)
