"""The metadata conformance cases about file records: reads, writes, owners, lists, deletes."""

from __future__ import annotations

import unicodedata

import anyio
import pytest

from ..errors import Conflict
from ..metadata.base import (
    FileRecord,
    MetadataStore,
    OffsetPaging,
    Order,
    Quota,
    StatusUpdates,
    Usage,
)
from ._records import NOW, T0, make_record, make_upload, page_through

__all__ = ["FileRecordConformance"]

# One name, composed (U+00E9) and decomposed (e + U+0301): equal to a reader, not to a store.
_NFC_OWNER = unicodedata.normalize("NFC", "josé")
_NFD_OWNER = unicodedata.normalize("NFD", "josé")


class FileRecordConformance:
    """A file record's life from insert to removal, as every owner sees it alone."""

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

    async def test_records_of_one_microsecond_list_by_id_whatever_order_they_came_in(
        self, metadata: MetadataStore
    ) -> None:
        """Ties on the creation time are broken by id, both ways, whatever order the records
        were written in (here neither ascending nor descending)."""
        records = [make_record(created_us=T0 + index // 6) for index in range(18)]
        written = sorted(records, key=lambda record: record.id[-5:])
        for record in written:
            await metadata.insert(record)
        expected = [record.id for record in sorted(records, key=lambda record: record.cursor)]
        assert [record.id for record in written] != expected
        orders: tuple[Order, ...] = ("asc", "desc")
        for order in orders:
            want = expected if order == "asc" else expected[::-1]
            page = await metadata.list("alice", now=NOW, limit=18, order=order)
            assert [record.id for record in page] == want
            assert await page_through(metadata, "alice", limit=5, order=order) == want

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

    async def test_counts_follow_every_change_of_a_files_state(
        self, metadata: MetadataStore
    ) -> None:
        if not isinstance(metadata, OffsetPaging):
            pytest.skip(f"{type(metadata).__name__} does not page by offset (optional)")
        later = NOW + 60

        async def counts() -> tuple[int, int, int]:
            return (
                await metadata.count("alice", now=later),
                await metadata.count("alice", now=later, purpose="batch"),
                await metadata.count("alice", now=later, purpose="vision"),
            )

        pending = make_record(state="pending")
        vision = make_record(created_us=T0 + 1, purpose="vision")
        held = make_record(created_us=T0 + 2, expires_at=later)
        expiring = make_record(created_us=T0 + 3, expires_at=later)
        swept = make_record(created_us=T0 + 4, expires_at=NOW + 1)
        for record in (pending, vision, held, expiring, swept):
            await metadata.insert(record)
        assert await metadata.hold("alice", held.id, "batch_1", now=NOW)
        assert await counts() == (2, 1, 1)  # the held one counts, the expired ones do not
        await metadata.commit(pending.replace(state="active"))
        assert await counts() == (3, 2, 1)
        claimed = await metadata.claim_for_sweep(now=later, stale_before=0, limit=10)
        assert {record.id for record in claimed} == {expiring.id, swept.id}
        assert await counts() == (3, 2, 1)
        assert await metadata.release("alice", held.id, "batch_1")
        assert await counts() == (2, 1, 1)  # released after its expiry: gone at once
        assert await metadata.begin_delete("alice", pending.id, now=NOW) is not None
        await metadata.remove("alice", pending.id, keep_record=True)
        assert await counts() == (1, 0, 1)
        await metadata.remove("alice", vision.id)  # removed while still active
        assert await counts() == (0, 0, 0)
        assert await metadata.count("bob", now=later) == 0

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

    async def test_aclose_releases_a_store_that_was_used_and_may_be_repeated(
        self, metadata: MetadataStore
    ) -> None:
        """Closing ends the store's use; a second close (the fixture's, here) is harmless."""
        await metadata.insert(make_record())
        await metadata.create_upload(make_upload())
        with anyio.fail_after(30):
            await metadata.aclose()
