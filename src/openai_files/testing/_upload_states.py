"""The metadata conformance cases for each upload-record method's contract: owners, the states
an upload moves between, refused parts, expiry and the parts left to discard."""

from __future__ import annotations

import dataclasses

import anyio
import pytest

from ..errors import Conflict
from ..metadata.base import MetadataStore, UploadRecord, UploadState, Usage
from ._records import NOW, make_part, make_upload

__all__ = ["UploadStateConformance"]


class UploadStateConformance:
    """Each upload-record method on its own: what it returns, for whom, from which states."""

    async def test_an_upload_round_trips_every_field_its_totals_starting_at_zero(
        self, metadata: MetadataStore
    ) -> None:
        upload = make_upload(size=2**40).replace(
            filename='naïve "quoted" ✓.bin', expires_after=3600, mime_type="text/plain"
        )
        await metadata.create_upload(upload.replace(received=5, part_count=1, reserved=5))
        assert await metadata.get_upload("alice", upload.id) == upload
        assert await metadata.get_upload("alice", "upload_missing") is None

    async def test_creating_an_upload_with_an_existing_id_is_a_conflict(
        self, metadata: MetadataStore
    ) -> None:
        upload = make_upload()
        await metadata.create_upload(upload)
        with pytest.raises(Conflict):
            await metadata.create_upload(upload.replace(owner="bob"))
        assert await metadata.get_upload("bob", upload.id) is None
        assert await metadata.usage("alice") == Usage(files=0, bytes=0, open_uploads=1)
        assert await metadata.usage("bob") == Usage(files=0, bytes=0, open_uploads=0)

    async def test_another_owners_upload_behaves_as_missing(self, metadata: MetadataStore) -> None:
        upload = make_upload("alice")
        await metadata.create_upload(upload)
        part = make_part(upload, 10)
        assert await metadata.add_part(part) == "added"
        assert await metadata.get_upload("bob", upload.id) is None
        assert await metadata.get_parts("bob", upload.id) == []
        assert not await metadata.move_upload(
            "bob", upload.id, from_states=("pending",), to="cancelled"
        )
        assert not await metadata.reserve_upload("bob", upload.id, 5, quota=None)
        await metadata.release_upload("bob", upload.id, 5)
        assert await metadata.add_part(dataclasses.replace(make_part(upload, 5), owner="bob")) == (
            "not_pending"
        )
        assert await metadata.usage("bob") == Usage(files=0, bytes=0, open_uploads=0)
        assert await metadata.usage("alice") == Usage(files=0, bytes=10, open_uploads=1)
        assert await metadata.get_upload("alice", upload.id) == upload.replace(
            received=10, part_count=1, reserved=10
        )
        assert await metadata.get_parts("alice", upload.id) == [part]

    async def test_an_upload_moves_only_from_the_states_given(
        self, metadata: MetadataStore
    ) -> None:
        upload = make_upload()
        await metadata.create_upload(upload)
        assert await metadata.add_part(make_part(upload, 10)) == "added"
        assert not await metadata.move_upload(
            "alice", upload.id, from_states=("completing",), to="completed", file_id="file-x"
        )
        assert await metadata.get_upload("alice", upload.id) == upload.replace(
            received=10, part_count=1, reserved=10
        )
        assert await metadata.move_upload(
            "alice", upload.id, from_states=("pending",), to="completing"
        )
        # A completion that failed hands the upload back: still open, still counted.
        assert await metadata.move_upload(
            "alice", upload.id, from_states=("completing",), to="pending"
        )
        assert await metadata.usage("alice") == Usage(files=0, bytes=10, open_uploads=1)
        assert await metadata.move_upload(
            "alice", upload.id, from_states=("pending",), to="completing"
        )
        assert await metadata.move_upload(
            "alice", upload.id, from_states=("completing",), to="completed", file_id="file-x"
        )
        done = upload.replace(state="completed", file_id="file-x", received=10, part_count=1)
        assert await metadata.get_upload("alice", upload.id) == done.replace(reserved=10)
        targets: tuple[UploadState, ...] = ("cancelled", "expired", "pending")
        for to in targets:
            assert not await metadata.move_upload(
                "alice", upload.id, from_states=("pending", "completing"), to=to
            )
        assert not await metadata.move_upload(
            "alice", "upload_missing", from_states=("pending",), to="cancelled"
        )
        assert (await metadata.get_upload("alice", upload.id)) == done.replace(reserved=10)

    async def test_exactly_one_of_concurrent_moves_wins(self, metadata: MetadataStore) -> None:
        upload = make_upload()
        await metadata.create_upload(upload)
        wins: list[bool] = []

        async def complete() -> None:
            wins.append(
                await metadata.move_upload(
                    "alice", upload.id, from_states=("pending",), to="completing"
                )
            )

        async with anyio.create_task_group() as group:
            for _ in range(8):
                group.start_soon(complete)
        assert sorted(wins) == [False] * 7 + [True]

    async def test_a_part_is_refused_unless_its_upload_is_pending(
        self, metadata: MetadataStore
    ) -> None:
        upload, cancelled = make_upload(), make_upload()
        for each in (upload, cancelled):
            await metadata.create_upload(each)
        assert await metadata.reserve_upload("alice", upload.id, 30, quota=None)
        assert await metadata.move_upload(
            "alice", upload.id, from_states=("pending",), to="completing"
        )
        # Refused while completing: the part's reservation is given back (still open).
        assert await metadata.add_part(make_part(upload, 30), reserved=30) == "not_pending"
        assert await metadata.usage("alice") == Usage(files=0, bytes=0, open_uploads=2)
        assert await metadata.move_upload(
            "alice", upload.id, from_states=("completing",), to="pending"
        )
        assert await metadata.add_part(make_part(upload, 30)) == "added"
        assert await metadata.move_upload(
            "alice", cancelled.id, from_states=("pending",), to="cancelled"
        )
        assert await metadata.add_part(make_part(cancelled, 1)) == "not_pending"
        missing = make_upload()
        assert await metadata.add_part(make_part(missing, 1)) == "not_pending"
        assert await metadata.get_parts("alice", cancelled.id) == []
        assert await metadata.get_parts("alice", missing.id) == []
        assert await metadata.usage("alice") == Usage(files=0, bytes=30, open_uploads=1)

    async def test_get_parts_returns_every_part_of_that_upload_only(
        self, metadata: MetadataStore
    ) -> None:
        mine, other, theirs = make_upload(), make_upload(), make_upload("bob")
        for upload in (mine, other, theirs):
            await metadata.create_upload(upload)
        parts = {upload.id: [make_part(upload, n) for n in (1, 2, 3)] for upload in (mine, other)}
        parts[theirs.id] = [make_part(theirs, 4)]
        for each in parts.values():
            for part in each:
                assert await metadata.add_part(part) == "added"
        for owner, upload in (("alice", mine), ("alice", other), ("bob", theirs)):
            found = await metadata.get_parts(owner, upload.id)
            assert sorted(found, key=lambda p: p.id) == sorted(parts[upload.id], key=lambda p: p.id)
        assert await metadata.get_parts("alice", theirs.id) == []

    async def test_expiry_closes_only_open_uploads_whose_time_has_come(
        self, metadata: MetadataStore
    ) -> None:
        due = NOW + 100
        pending, completing = make_upload(expires_at=due), make_upload(expires_at=due)
        later = make_upload("bob", expires_at=due + 1)
        cancelled, completed = make_upload(expires_at=due), make_upload(expires_at=due)
        for upload in (pending, completing, later, cancelled, completed):
            await metadata.create_upload(upload)
            assert await metadata.add_part(make_part(upload, 10)) == "added"
        assert await metadata.reserve_upload("alice", pending.id, 50, quota=None)
        moves: list[tuple[UploadRecord, UploadState]] = [
            (completing, "completing"),
            (cancelled, "cancelled"),
        ]
        for upload, to in moves:
            assert await metadata.move_upload("alice", upload.id, from_states=("pending",), to=to)
        assert await metadata.move_upload(
            "alice", completed.id, from_states=("pending",), to="completing"
        )
        assert await metadata.move_upload(
            "alice", completed.id, from_states=("completing",), to="completed", file_id="file-x"
        )
        assert await metadata.expire_uploads(now=due - 1) == 0
        assert await metadata.expire_uploads(now=due) == 2  # at expires_at, not only after
        assert await metadata.expire_uploads(now=due) == 0
        states = {
            upload.id: found.state
            for upload in (pending, completing, later, cancelled, completed)
            if (found := await metadata.get_upload(upload.owner, upload.id)) is not None
        }
        assert states == {
            pending.id: "expired",
            completing.id: "expired",
            later.id: "pending",
            cancelled.id: "cancelled",
            completed.id: "completed",
        }
        # Closed as `move_upload` closes one: out of the open count, its reservation given back.
        assert await metadata.usage("alice") == Usage(files=0, bytes=40, open_uploads=0)
        assert await metadata.usage("bob") == Usage(files=0, bytes=10, open_uploads=1)
        expired = await metadata.get_upload("alice", pending.id)
        assert expired is not None
        assert expired.reserved == expired.received == 10

    async def test_finished_parts_are_those_of_closed_uploads_of_any_owner_up_to_the_limit(
        self, metadata: MetadataStore
    ) -> None:
        completed, cancelled, expired = make_upload(), make_upload("bob"), make_upload()
        completing, pending = make_upload(), make_upload()
        uploads = [completed, cancelled, expired.replace(expires_at=NOW + 1), completing, pending]
        parts = {upload.id: [make_part(upload, 1), make_part(upload, 2)] for upload in uploads}
        for upload in uploads:
            await metadata.create_upload(upload)
            for part in parts[upload.id]:
                assert await metadata.add_part(part) == "added"
        for upload in (completed, completing):
            assert await metadata.move_upload(
                "alice", upload.id, from_states=("pending",), to="completing"
            )
        assert await metadata.move_upload(
            "alice", completed.id, from_states=("completing",), to="completed", file_id="file-x"
        )
        assert await metadata.move_upload(
            "bob", cancelled.id, from_states=("pending",), to="cancelled"
        )
        assert await metadata.expire_uploads(now=NOW + 1) == 1
        assert await metadata.finished_parts(limit=0) == []
        finished = {part for upload in (completed, cancelled, expired) for part in parts[upload.id]}
        assert set(await metadata.finished_parts(limit=100)) == finished
        first = await metadata.finished_parts(limit=4)
        assert len(first) == 4
        assert set(first) <= finished
        for part in first:
            await metadata.remove_part(part.id)
        assert set(await metadata.finished_parts(limit=100)) == finished - set(first)
