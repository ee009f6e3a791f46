"""`MetadataConformance`: the behaviour every `MetadataStore` backend must show."""

from __future__ import annotations

import secrets

import anyio
import pytest

from ..errors import Conflict
from ..ids import new_file_id
from ..metadata.base import FileRecord, MetadataStore, RecordState

__all__ = ["MetadataConformance", "make_record"]

NOW = 1_800_000_000
T0 = NOW * 1_000_000


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
        assert await metadata.commit(done) is True
        assert await metadata.get("alice", pending.id, now=NOW) == done
        assert await metadata.commit(done) is False

    async def test_commit_without_a_pending_record_changes_nothing(
        self, metadata: MetadataStore
    ) -> None:
        assert await metadata.commit(make_record()) is False
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
        assert deleting == record.replace(state="deleting")
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
