"""The metadata conformance cases about what a file record counts: usage, quotas, holds,
sweeps and idempotency keys."""

from __future__ import annotations

import anyio
import pytest

from ..errors import Conflict, QuotaExceeded
from ..metadata.base import FileRecord, MetadataStore, Quota, Usage
from ._records import NOW, T0, make_record

__all__ = ["FileLifecycleConformance"]


class FileLifecycleConformance:
    """Usage and quotas, holds, the sweeper's claims and idempotency keys."""

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

    async def test_a_key_holds_from_the_second_it_was_remembered(
        self, metadata: MetadataStore
    ) -> None:
        """``since`` is inclusive: a key remembered at ``NOW`` is found with ``since=NOW``, at
        commit as on lookup, and not one second later."""
        first = make_record(state="pending").replace(changed_at=NOW)
        second = make_record(created_us=T0 + 1, state="pending").replace(changed_at=NOW)
        await metadata.insert(first)
        await metadata.insert(second)
        assert await metadata.commit(first, idempotency_key="k", key_since=NOW) == first.id
        assert await metadata.idempotent_file("alice", "k", since=NOW) == first.id
        assert await metadata.idempotent_file("alice", "k", since=NOW + 1) is None
        assert await metadata.commit(second, idempotency_key="k", key_since=NOW) == first.id
        assert await metadata.get("alice", second.id, now=NOW) is None

    async def test_a_key_past_its_window_goes_to_the_next_file_without_a_conflict(
        self, metadata: MetadataStore
    ) -> None:
        """A key remembered before ``key_since`` is stale even though its file is still
        visible: the next commit with it makes its own file and takes the key over (a store
        with a unique key row must replace the stale row, not refuse the new one)."""
        first = make_record(state="pending").replace(changed_at=NOW)
        await metadata.insert(first)
        assert await metadata.commit(first, idempotency_key="k", key_since=0) == first.id
        later = NOW + 86_401
        second = make_record(created_us=T0 + 1, state="pending").replace(changed_at=later)
        await metadata.insert(second)
        assert await metadata.commit(second, idempotency_key="k", key_since=NOW + 1) == second.id
        assert await metadata.idempotent_file("alice", "k", since=NOW + 1) == second.id
        visible = await metadata.list("alice", now=later, limit=10, order="asc")
        assert [record.id for record in visible] == [first.id, second.id]
        third = make_record(created_us=T0 + 2, state="pending").replace(changed_at=later)
        await metadata.insert(third)
        assert await metadata.commit(third, idempotency_key="k", key_since=NOW + 1) == second.id

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
