"""The metadata conformance cases about a file recorded in one step: an ``active`` record
inserted with its quota and idempotency key checked in the same transaction (a small upload)."""

from __future__ import annotations

import anyio
import pytest

from ..errors import QuotaExceeded
from ..metadata.base import MetadataStore, Quota, Usage
from ._records import NOW, T0, make_record

__all__ = ["OneStepInsertConformance"]


class OneStepInsertConformance:
    """`MetadataStore.insert` of an ``active`` record, under a quota and a key."""

    async def test_an_active_record_inserted_is_visible_and_counted_at_once(
        self, metadata: MetadataStore
    ) -> None:
        record = make_record().replace(bytes=1024, changed_at=NOW)
        assert await metadata.insert(record, quota=Quota(max_files=1, max_bytes=1024)) == record.id
        assert await metadata.get("alice", record.id, now=NOW) == record
        assert [r.id for r in await metadata.list("alice", now=NOW, limit=10)] == [record.id]
        assert await metadata.usage("alice") == Usage(files=1, bytes=1024)
        assert await metadata.begin_delete("alice", record.id, now=NOW) is not None
        await metadata.remove("alice", record.id)
        assert await metadata.usage("alice") == Usage(files=0, bytes=0)

    async def test_an_insert_past_the_quota_adds_nothing(self, metadata: MetadataStore) -> None:
        kept = make_record().replace(bytes=60, changed_at=NOW)
        await metadata.insert(kept, quota=Quota(max_bytes=100))
        too_big = make_record(created_us=T0 + 1).replace(bytes=41, changed_at=NOW)
        with pytest.raises(QuotaExceeded):
            await metadata.insert(too_big, quota=Quota(max_bytes=100))
        one_too_many = make_record(created_us=T0 + 2).replace(bytes=1, changed_at=NOW)
        with pytest.raises(QuotaExceeded):
            await metadata.insert(one_too_many, quota=Quota(max_files=1))
        assert await metadata.get("alice", too_big.id, now=NOW) is None
        assert await metadata.get("alice", one_too_many.id, now=NOW) is None
        assert await metadata.usage("alice") == Usage(files=1, bytes=60)

    async def test_an_insert_under_a_key_answers_with_the_file_the_key_names(
        self, metadata: MetadataStore
    ) -> None:
        first = make_record().replace(changed_at=NOW)
        second = make_record(created_us=T0 + 1).replace(changed_at=NOW)
        key_since = NOW - 10
        assert await metadata.insert(first, idempotency_key="k", key_since=key_since) == first.id
        # The second is not added, and no quota is checked: the key answers first.
        answer = await metadata.insert(
            second, quota=Quota(max_files=1), idempotency_key="k", key_since=key_since
        )
        assert answer == first.id
        assert await metadata.get("alice", second.id, now=NOW) is None
        assert await metadata.usage("alice") == Usage(files=1, bytes=first.bytes)
        assert await metadata.idempotent_file("alice", "k", since=key_since) == first.id
        assert await metadata.idempotent_file("bob", "k", since=0) is None

    async def test_inserts_and_commits_share_one_key(self, metadata: MetadataStore) -> None:
        """A key a commit remembered answers an insert, and the reverse."""
        committed = make_record(state="pending").replace(changed_at=NOW)
        await metadata.insert(committed)
        assert await metadata.commit(committed, idempotency_key="a", key_since=0) == committed.id
        inserted = make_record(created_us=T0 + 1).replace(changed_at=NOW)
        assert await metadata.insert(inserted, idempotency_key="a", key_since=0) == committed.id
        assert await metadata.insert(inserted, idempotency_key="b", key_since=0) == inserted.id
        pending = make_record(created_us=T0 + 2, state="pending").replace(changed_at=NOW)
        await metadata.insert(pending)
        assert await metadata.commit(pending, idempotency_key="b", key_since=0) == inserted.id
        assert await metadata.get("alice", pending.id, now=NOW) is None

    async def test_a_key_whose_file_is_gone_goes_to_the_next_insert(
        self, metadata: MetadataStore
    ) -> None:
        first = make_record().replace(changed_at=NOW)
        await metadata.insert(first, idempotency_key="k", key_since=0)
        assert await metadata.begin_delete("alice", first.id, now=NOW) is not None
        await metadata.remove("alice", first.id)
        second = make_record(created_us=T0 + 1).replace(changed_at=NOW)
        assert await metadata.insert(second, idempotency_key="k", key_since=0) == second.id
        assert await metadata.idempotent_file("alice", "k", since=0) == second.id

    async def test_concurrent_inserts_under_one_key_make_one_file(
        self, metadata: MetadataStore
    ) -> None:
        records = [make_record(created_us=T0 + i).replace(changed_at=NOW) for i in range(8)]
        answers: list[str] = []

        async def insert(index: int) -> None:
            answers.append(await metadata.insert(records[index], idempotency_key="k"))

        async with anyio.create_task_group() as group:
            for index in range(len(records)):
                group.start_soon(insert, index)
        visible = await metadata.list("alice", now=NOW, limit=10)
        assert len(visible) == 1
        assert answers == [visible[0].id] * len(records)
        assert await metadata.usage("alice") == Usage(files=1, bytes=visible[0].bytes)

    async def test_a_key_goes_with_an_active_record_only(self, metadata: MetadataStore) -> None:
        pending = make_record(state="pending")
        with pytest.raises(ValueError, match="active"):
            await metadata.insert(pending, idempotency_key="k")
        assert await metadata.usage("alice") == Usage(files=0, bytes=0)
