"""`MetadataConformance`: the behaviour every `MetadataStore` backend must show."""

from __future__ import annotations

import dataclasses
import secrets
import unicodedata

import anyio
import pytest

from ..errors import Conflict, QuotaExceeded
from ..ids import new_file_id, new_object_id
from ..metadata.base import (
    FileRecord,
    MetadataStore,
    OffsetPaging,
    PartRecord,
    Quota,
    RecordState,
    StatusUpdates,
    UploadRecord,
    Usage,
)

__all__ = ["MetadataConformance", "make_part", "make_record", "make_upload"]

NOW = 1_800_000_000
T0 = NOW * 1_000_000
# One name, composed (U+00E9) and decomposed (e + U+0301): equal to a reader, not to a store.
_NFC_OWNER = unicodedata.normalize("NFC", "josé")
_NFD_OWNER = unicodedata.normalize("NFD", "josé")


def make_record(
    owner: str = "alice",
    *,
    created_us: int = T0,
    purpose: str = "batch",
    state: RecordState = "active",
    expires_at: int | None = None,
    filename: str = "data.jsonl",
) -> FileRecord:
    """A record with sensible defaults and a fresh id for ``created_us``."""
    return FileRecord(
        id=new_file_id(created_us),
        owner=owner,
        purpose=purpose,
        filename=filename,
        bytes=12,
        created_us=created_us,
        expires_at=expires_at,
        status="processed",
        status_details=None,
        storage_key=secrets.token_hex(16),
        sha256="0" * 64,
        media_type="application/jsonl",
        state=state,
    )


def make_upload(
    owner: str = "alice", *, size: int = 100, expires_at: int = NOW + 3600
) -> UploadRecord:
    """A pending upload of ``size`` declared bytes with a fresh id."""
    return UploadRecord(
        id=new_object_id("upload_"),
        owner=owner,
        filename="data.bin",
        purpose="assistants",
        bytes=size,
        mime_type="application/octet-stream",
        expires_after=None,
        created_at=NOW,
        expires_at=expires_at,
        state="pending",
    )


def make_part(upload: UploadRecord, size: int) -> PartRecord:
    """A part of ``size`` bytes for ``upload``, with a fresh id."""
    part_id = new_object_id("part_")
    return PartRecord(
        id=part_id,
        upload_id=upload.id,
        owner=upload.owner,
        bytes=size,
        sha256="0" * 64,
        storage_key=f"uploads/{upload.id}/{part_id}",
        created_at=NOW,
    )


async def page_through(
    store: MetadataStore, owner: str, *, limit: int, order: str, purpose: str | None = None
) -> list[str]:
    seen: list[str] = []
    after = None
    while True:
        page = await store.list(
            owner,
            now=NOW,
            purpose=purpose,
            after=after,
            limit=limit,
            order="asc" if order == "asc" else "desc",
        )
        seen += [record.id for record in page]
        if len(page) < limit:
            return seen
        after = page[-1].cursor


class MetadataConformance:
    """Subclass with a ``metadata`` fixture that yields an empty store."""

    pytestmark = pytest.mark.anyio

    async def test_a_pending_record_is_invisible_until_committed(
        self, metadata: MetadataStore
    ) -> None:
        pending = make_record(state="pending")
        await metadata.insert(pending)
        assert await metadata.get("alice", pending.id, now=NOW) is None
        assert await metadata.list("alice", now=NOW, limit=10) == []
        done = pending.replace(bytes=99, sha256="f" * 64, state="active")
        assert await metadata.commit(done) == pending.id
        assert await metadata.get("alice", pending.id, now=NOW) == done
        with pytest.raises(Conflict):
            await metadata.commit(done)

    async def test_commit_without_a_pending_record_changes_nothing(
        self, metadata: MetadataStore
    ) -> None:
        with pytest.raises(Conflict):
            await metadata.commit(make_record())
        assert await metadata.list("alice", now=NOW, limit=10) == []

    async def test_inserting_an_existing_id_is_a_conflict(self, metadata: MetadataStore) -> None:
        record = make_record()
        await metadata.insert(record)
        with pytest.raises(Conflict):
            await metadata.insert(record.replace(owner="bob"))
        assert await metadata.get("bob", record.id, now=NOW) is None

    async def test_records_round_trip_every_field(self, metadata: MetadataStore) -> None:
        record = make_record(filename='naïve "quoted" ✓.jsonl', expires_at=NOW + 60)
        record = record.replace(status_details="line 3: bad", bytes=2**40, media_type=None)
        await metadata.insert(record)
        assert await metadata.get("alice", record.id, now=NOW) == record

    async def test_another_owners_record_behaves_as_missing(self, metadata: MetadataStore) -> None:
        record = make_record("alice")
        await metadata.insert(record)
        assert await metadata.get("bob", record.id, now=NOW) is None
        assert await metadata.list("bob", now=NOW, limit=10) == []
        assert await metadata.begin_delete("bob", record.id, now=NOW) is None
        await metadata.remove("bob", record.id)
        assert await metadata.get("alice", record.id, now=NOW) == record

    @pytest.mark.parametrize(
        ("owner", "other"),
        [
            pytest.param("alice", "alice ", id="trailing-space"),
            pytest.param("alice", "Alice", id="case"),
            pytest.param(_NFC_OWNER, _NFD_OWNER, id="unicode-normalization"),
        ],
    )
    async def test_owners_are_compared_exactly(
        self, metadata: MetadataStore, owner: str, other: str
    ) -> None:
        """Owners that differ by a trailing space, by case, or only by Unicode normalization
        are separate tenants: neither reads, lists, deletes, holds or counts the other's files,
        and each has a quota of its own."""
        quota = Quota(max_files=1, max_bytes=100)
        mine = make_record(owner)
        await metadata.insert(mine, quota=quota)
        assert await metadata.get(other, mine.id, now=NOW) is None
        assert await metadata.list(other, now=NOW, limit=10) == []
        assert await metadata.usage(other) == Usage(files=0, bytes=0)
        assert not await metadata.hold(other, mine.id, "batch-1", now=NOW)
        assert await metadata.begin_delete(other, mine.id, now=NOW) is None
        await metadata.remove(other, mine.id)
        theirs = make_record(other, created_us=T0 + 1)
        await metadata.insert(theirs, quota=quota)  # the quota is not shared either
        assert await metadata.usage(other) == Usage(files=1, bytes=theirs.bytes)
        assert await metadata.usage(owner) == Usage(files=1, bytes=mine.bytes)
        assert [r.id for r in await metadata.list(owner, now=NOW, limit=10)] == [mine.id]
        assert await metadata.get(owner, mine.id, now=NOW) == mine

    async def test_ids_holders_purposes_and_storage_keys_are_compared_exactly(
        self, metadata: MetadataStore
    ) -> None:
        """No identifier matches another that differs by a trailing space or by case."""
        record = make_record(purpose="batch")
        await metadata.insert(record)
        for file_id in (record.id + " ", record.id.upper()):
            assert await metadata.get("alice", file_id, now=NOW) is None
            assert not await metadata.hold("alice", file_id, "batch-1", now=NOW)
        for purpose in ("batch ", "Batch"):
            assert await metadata.list("alice", now=NOW, purpose=purpose, limit=10) == []
        assert await metadata.hold("alice", record.id, "batch-1", now=NOW)
        for holder in ("batch-1 ", "Batch-1"):
            assert not await metadata.release("alice", record.id, holder)
        assert (await metadata.get("alice", record.id, now=NOW)) == record.replace(hold_count=1)
        wrong = [record.storage_key + " ", record.storage_key.upper()]
        assert await metadata.existing_keys(wrong) == set()
        upload = make_upload()
        await metadata.create_upload(upload)
        assert await metadata.get_upload("alice", upload.id + " ") is None
        assert await metadata.get_upload("alice ", upload.id) is None

    async def test_list_orders_by_creation_time_both_ways_and_filters_by_purpose(
        self, metadata: MetadataStore
    ) -> None:
        records = [
            make_record(created_us=T0 + step, purpose="batch" if step % 2 else "vision")
            for step in (5, 1, 4, 2, 3)
        ]
        for record in records:
            await metadata.insert(record)
        by_time = sorted(records, key=lambda record: record.created_us)
        asc = await metadata.list("alice", now=NOW, limit=10, order="asc")
        assert [r.id for r in asc] == [r.id for r in by_time]
        desc = await metadata.list("alice", now=NOW, limit=10, order="desc")
        assert [r.id for r in desc] == [r.id for r in reversed(by_time)]
        vision = await metadata.list("alice", now=NOW, limit=10, purpose="vision", order="asc")
        assert [r.id for r in vision] == [r.id for r in by_time if r.purpose == "vision"]

    async def test_pages_never_skip_or_repeat_records_created_in_the_same_microsecond(
        self, metadata: MetadataStore
    ) -> None:
        records = [make_record(created_us=T0 + index // 10) for index in range(53)]
        for record in records:
            await metadata.insert(record)
        expected = sorted(records, key=lambda record: record.cursor)
        for order in ("asc", "desc"):
            seen = await page_through(metadata, "alice", limit=4, order=order)
            want = [r.id for r in expected] if order == "asc" else [r.id for r in expected][::-1]
            assert seen == want

    async def test_a_cursor_stays_valid_after_its_record_is_removed(
        self, metadata: MetadataStore
    ) -> None:
        records = [make_record(created_us=T0 + index) for index in range(6)]
        for record in records:
            await metadata.insert(record)
        await metadata.remove("alice", records[2].id)
        page = await metadata.list("alice", now=NOW, after=records[2].cursor, limit=10, order="asc")
        assert [r.id for r in page] == [r.id for r in records[3:]]

    async def test_offset_pages_and_counts_agree_with_the_cursor_list(
        self, metadata: MetadataStore
    ) -> None:
        if not isinstance(metadata, OffsetPaging):
            pytest.skip(f"{type(metadata).__name__} does not page by offset (optional)")
        records = [
            make_record(created_us=T0 + index // 3, purpose="batch" if index % 2 else "vision")
            for index in range(11)
        ]
        records += [
            make_record(state="pending"),
            make_record(expires_at=NOW),
            make_record(owner="bob"),
        ]
        for record in records:
            await metadata.insert(record)
        assert await metadata.count("alice", now=NOW) == 11
        assert await metadata.count("alice", now=NOW, purpose="batch") == 5
        assert await metadata.count("carol", now=NOW) == 0
        for order in ("asc", "desc"):
            for purpose in (None, "vision"):
                whole = await metadata.list(
                    "alice", now=NOW, purpose=purpose, limit=20, order=order
                )
                pages = [
                    record
                    for offset in range(0, 12, 4)
                    for record in await metadata.list_at(
                        "alice", now=NOW, purpose=purpose, offset=offset, limit=4, order=order
                    )
                ]
                assert [r.id for r in pages] == [r.id for r in whole]
        beyond = await metadata.list_at("alice", now=NOW, offset=11, limit=4)
        assert beyond == []

    async def test_a_status_is_recorded_on_a_visible_file_of_its_owner_only(
        self, metadata: MetadataStore
    ) -> None:
        if not isinstance(metadata, StatusUpdates):
            pytest.skip(f"{type(metadata).__name__} does not record statuses (optional)")
        record = make_record()
        expired = make_record(expires_at=NOW)
        for each in (record, expired):
            await metadata.insert(each)
        updated = await metadata.set_status(
            "alice", record.id, status="error", details="Line 2: not JSON", now=NOW
        )
        assert updated == record.replace(status="error", status_details="Line 2: not JSON")
        assert await metadata.get("alice", record.id, now=NOW) == updated
        again = await metadata.set_status(
            "alice", record.id, status="error", details="Line 2: not JSON", now=NOW
        )
        assert again == updated
        for owner, file_id in (("bob", record.id), ("alice", expired.id), ("alice", "file-x")):
            assert (
                await metadata.set_status(owner, file_id, status="processed", details=None, now=NOW)
                is None
            )
        assert await metadata.get("alice", expired.id, now=NOW - 1) == expired

    async def test_expired_records_are_invisible_from_the_second_they_expire(
        self, metadata: MetadataStore
    ) -> None:
        expiring = make_record(expires_at=NOW + 10)
        await metadata.insert(expiring)
        assert await metadata.get("alice", expiring.id, now=NOW + 9) == expiring
        assert await metadata.get("alice", expiring.id, now=NOW + 10) is None
        assert await metadata.list("alice", now=NOW + 10, limit=10) == []
        assert await metadata.begin_delete("alice", expiring.id, now=NOW + 10) is None

    async def test_begin_delete_hides_the_record_once_and_remove_drops_it(
        self, metadata: MetadataStore
    ) -> None:
        record = make_record()
        await metadata.insert(record)
        deleting = await metadata.begin_delete("alice", record.id, now=NOW)
        assert deleting == record.replace(state="deleting", changed_at=NOW)
        assert await metadata.begin_delete("alice", record.id, now=NOW) is None
        assert await metadata.get("alice", record.id, now=NOW) is None
        assert await metadata.list("alice", now=NOW, limit=10) == []
        await metadata.remove("alice", record.id)
        await metadata.remove("alice", record.id)
        await metadata.insert(record)  # removed for good: the id is free again
        assert await metadata.get("alice", record.id, now=NOW) == record

    async def test_exactly_one_of_concurrent_deletes_wins(self, metadata: MetadataStore) -> None:
        record = make_record()
        await metadata.insert(record)
        winners: list[FileRecord] = []

        async def attempt() -> None:
            found = await metadata.begin_delete("alice", record.id, now=NOW)
            if found is not None:
                winners.append(found)

        async with anyio.create_task_group() as group:
            for _ in range(8):
                group.start_soon(attempt)
        assert [winner.id for winner in winners] == [record.id]

    async def test_usage_counts_pending_and_active_files_through_every_change(
        self, metadata: MetadataStore
    ) -> None:
        pending = make_record(state="pending").replace(bytes=0)
        await metadata.insert(pending)
        await metadata.insert(make_record(created_us=T0 + 1).replace(bytes=5))
        assert await metadata.usage("alice") == Usage(files=2, bytes=5)
        assert await metadata.reserve("alice", pending.id, 100, quota=None)
        assert await metadata.usage("alice") == Usage(files=2, bytes=105)
        await metadata.commit(pending.replace(bytes=40, state="active"))
        assert await metadata.usage("alice") == Usage(files=2, bytes=45)
        assert await metadata.begin_delete("alice", pending.id, now=NOW) is not None
        assert await metadata.usage("alice") == Usage(files=1, bytes=5)
        await metadata.remove("alice", pending.id)
        assert await metadata.usage("alice") == Usage(files=1, bytes=5)
        assert await metadata.usage("bob") == Usage(files=0, bytes=0)

    async def test_a_quota_refuses_the_file_or_the_bytes_that_would_pass_it(
        self, metadata: MetadataStore
    ) -> None:
        quota = Quota(max_files=2, max_bytes=100)
        first = make_record(state="pending").replace(bytes=0)
        await metadata.insert(first, quota=quota)
        await metadata.insert(make_record(created_us=T0 + 1).replace(bytes=0), quota=quota)
        with pytest.raises(QuotaExceeded):
            await metadata.insert(make_record(created_us=T0 + 2).replace(bytes=0), quota=quota)
        assert await metadata.reserve("alice", first.id, 100, quota=quota)
        assert not await metadata.reserve("alice", first.id, 1, quota=quota)
        assert await metadata.usage("alice") == Usage(files=2, bytes=100)
        assert not await metadata.reserve("alice", "file-missing", 1, quota=None)

    async def test_concurrent_reservations_never_pass_the_quota(
        self, metadata: MetadataStore
    ) -> None:
        quota = Quota(max_bytes=1000)
        uploads = [
            make_record(created_us=T0 + i, state="pending").replace(bytes=0) for i in range(8)
        ]
        for upload in uploads:
            await metadata.insert(upload, quota=quota)
        granted: list[str] = []

        async def take(record: FileRecord) -> None:
            for _ in range(5):
                if await metadata.reserve("alice", record.id, 60, quota=quota):
                    granted.append(record.id)

        async with anyio.create_task_group() as group:
            for upload in uploads:
                group.start_soon(take, upload)
        assert len(granted) == 1000 // 60
        assert (await metadata.usage("alice")).bytes == 60 * (1000 // 60)

    async def test_a_held_file_cannot_be_deleted_and_does_not_expire(
        self, metadata: MetadataStore
    ) -> None:
        record = make_record(expires_at=NOW + 10)
        await metadata.insert(record)
        assert await metadata.hold("alice", record.id, "batch-1", now=NOW)
        assert await metadata.hold("alice", record.id, "batch-1", now=NOW)  # idempotent
        assert await metadata.hold("alice", record.id, "batch-2", now=NOW)
        assert not await metadata.hold("bob", record.id, "batch-3", now=NOW)
        with pytest.raises(Conflict):
            await metadata.begin_delete("alice", record.id, now=NOW)
        later = NOW + 100
        assert await metadata.get("alice", record.id, now=later) is not None
        assert await metadata.claim_for_sweep(now=later, stale_before=0, limit=10) == []
        assert await metadata.release("alice", record.id, "batch-1")
        assert not await metadata.release("alice", record.id, "batch-1")
        assert await metadata.get("alice", record.id, now=later) is not None
        assert await metadata.release("alice", record.id, "batch-2")
        assert await metadata.get("alice", record.id, now=later) is None
        assert await metadata.begin_delete("alice", record.id, now=NOW) is not None

    async def test_soft_removal_keeps_a_deleted_record_outside_lists_and_usage(
        self, metadata: MetadataStore
    ) -> None:
        record = make_record()
        await metadata.insert(record)
        await metadata.begin_delete("alice", record.id, now=NOW)
        await metadata.remove("alice", record.id, keep_record=True)
        kept = await metadata.get("alice", record.id, now=NOW, include_deleted=True)
        assert kept is not None
        assert (kept.state, kept.status) == ("deleted", "deleted")
        assert await metadata.get("alice", record.id, now=NOW) is None
        assert await metadata.list("alice", now=NOW, limit=10) == []
        assert await metadata.usage("alice") == Usage(files=0, bytes=0)
        assert await metadata.begin_delete("alice", record.id, now=NOW) is None

    async def test_the_sweep_claims_expired_and_stuck_records_once(
        self, metadata: MetadataStore
    ) -> None:
        expired = make_record(expires_at=NOW - 1)
        fresh = make_record(created_us=T0 + 1, expires_at=NOW + 1000)
        stuck = make_record(created_us=T0 + 2, state="pending").replace(changed_at=NOW - 7200)
        young = make_record(created_us=T0 + 3, state="pending").replace(changed_at=NOW)
        for record in (expired, fresh, stuck, young):
            await metadata.insert(record)
        claimed = await metadata.claim_for_sweep(now=NOW, stale_before=NOW - 3600, limit=10)
        assert sorted(r.id for r in claimed) == sorted([expired.id, stuck.id])
        assert {r.id: r.state for r in claimed} == {expired.id: "active", stuck.id: "pending"}
        assert await metadata.claim_for_sweep(now=NOW, stale_before=NOW - 3600, limit=10) == []
        assert await metadata.usage("alice") == Usage(files=2, bytes=fresh.bytes + young.bytes)
        again = await metadata.claim_for_sweep(now=NOW + 7200, stale_before=NOW + 1, limit=10)
        # Later, the claimed ones count as stuck deletes, and the fresh one has expired too.
        assert sorted(r.id for r in again) == sorted(r.id for r in (expired, fresh, stuck, young))

    async def test_concurrent_sweepers_never_claim_a_record_twice(
        self, metadata: MetadataStore
    ) -> None:
        for index in range(30):
            await metadata.insert(make_record(created_us=T0 + index, expires_at=NOW - 1))
        claims: list[str] = []

        async def sweeper() -> None:
            while batch := await metadata.claim_for_sweep(now=NOW, stale_before=0, limit=4):
                claims.extend(record.id for record in batch)

        async with anyio.create_task_group() as group:
            for _ in range(4):
                group.start_soon(sweeper)
        assert len(claims) == len(set(claims)) == 30

    async def test_an_idempotency_key_answers_with_the_first_file(
        self, metadata: MetadataStore
    ) -> None:
        first = make_record(state="pending").replace(changed_at=NOW)
        second = make_record(created_us=T0 + 1, state="pending").replace(changed_at=NOW)
        await metadata.insert(first)
        await metadata.insert(second)
        assert await metadata.commit(first, idempotency_key="k", key_since=NOW - 10) == first.id
        assert await metadata.commit(second, idempotency_key="k", key_since=NOW - 10) == first.id
        assert await metadata.get("alice", second.id, now=NOW) is None
        assert await metadata.idempotent_file("alice", "k", since=NOW - 10) == first.id
        assert await metadata.idempotent_file("alice", "k", since=NOW + 1) is None
        assert await metadata.idempotent_file("bob", "k", since=0) is None

    async def test_idempotency_keys_are_compared_exactly(self, metadata: MetadataStore) -> None:
        """Keys that differ by case, by an accent or by a trailing space are different keys:
        each commits a file of its own."""
        keys = ["Report-2024", "report-2024", "réport-2024", "Report-2024 "]
        records = [
            make_record(created_us=T0 + index, state="pending").replace(changed_at=NOW)
            for index in range(len(keys))
        ]
        for record in records:
            await metadata.insert(record)
        for key, record in zip(keys, records, strict=True):
            assert await metadata.commit(record, idempotency_key=key, key_since=0) == record.id
        for key, record in zip(keys, records, strict=True):
            assert await metadata.idempotent_file("alice", key, since=0) == record.id
        listed = await metadata.list("alice", now=NOW, limit=10)
        assert len(listed) == len(keys)

    @pytest.mark.parametrize("fate", ["expired", "deleted", "gone"])
    async def test_a_key_whose_file_is_no_longer_visible_goes_to_the_next_file(
        self, metadata: MetadataStore, fate: str
    ) -> None:
        """A key whose file expired (swept or not), was deleted or is gone is free: the next
        commit with it makes its own file visible and takes the key."""
        first = make_record(state="pending", expires_at=NOW + 5).replace(changed_at=NOW)
        await metadata.insert(first)
        assert await metadata.commit(first, idempotency_key="k", key_since=0) == first.id
        later = NOW + 10
        if fate != "expired":
            assert await metadata.begin_delete("alice", first.id, now=NOW) is not None
            await metadata.remove("alice", first.id, keep_record=fate == "deleted")
        second = make_record(created_us=T0 + 1, state="pending").replace(changed_at=later)
        await metadata.insert(second)
        assert await metadata.commit(second, idempotency_key="k", key_since=0) == second.id
        assert await metadata.get("alice", second.id, now=later) is not None
        assert await metadata.idempotent_file("alice", "k", since=0) == second.id

    async def test_concurrent_commits_with_a_key_whose_file_expired_make_one_file(
        self, metadata: MetadataStore
    ) -> None:
        expired = make_record(state="pending", expires_at=NOW + 5).replace(changed_at=NOW)
        await metadata.insert(expired)
        await metadata.commit(expired, idempotency_key="k", key_since=0)
        later = NOW + 10
        racers = [
            make_record(created_us=T0 + 1 + index, state="pending").replace(changed_at=later)
            for index in range(4)
        ]
        for racer in racers:
            await metadata.insert(racer)
        answers: list[str] = []

        async def commit(record: FileRecord) -> None:
            answers.append(await metadata.commit(record, idempotency_key="k", key_since=0))

        async with anyio.create_task_group() as group:
            for racer in racers:
                group.start_soon(commit, racer)
        assert len(set(answers)) == 1
        assert answers[0] in {racer.id for racer in racers}
        visible = await metadata.list("alice", now=later, limit=10)
        assert [record.id for record in visible] == answers[:1]

    async def test_existing_keys_finds_the_storage_keys_of_any_record(
        self, metadata: MetadataStore
    ) -> None:
        records = [make_record(created_us=T0 + i, state="pending") for i in range(3)]
        for record in records:
            await metadata.insert(record)
        keys = [r.storage_key for r in records] + ["aa/bb/unknown"]
        assert await metadata.existing_keys(keys) == {r.storage_key for r in records}

    # -- the Uploads API: parts count in the usage, open uploads are bounded -------------------

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
