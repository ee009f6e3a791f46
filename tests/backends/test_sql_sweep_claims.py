"""A sweeper's claim on every SQL backend: a batch costs the same few statements in one
transaction whatever its size, and a candidate that changed between the sweeper's read and its
claim (held, deleted by a client, claimed by another sweeper) is left alone, its usage with it."""

from __future__ import annotations

import pytest

from openai_files import SQLMetadataStore
from openai_files.metadata.base import FileRecord

from ..databases import counted
from .sql_records import NOW, OWNER, QUOTA, pending
from .test_sql_round_trips import store as store  # the fixture: every SQL backend

pytestmark = pytest.mark.anyio

LATER = NOW + 3600


async def expiring(store: SQLMetadataStore, count: int) -> list[FileRecord]:
    """``count`` active files of `OWNER` of 10 bytes each that expire before `LATER`, as the
    store holds them."""
    records = []
    for index in range(count):
        record = pending(index).replace(expires_at=NOW + 60)
        await store.insert(record, quota=QUOTA)
        assert await store.commit(record.replace(bytes=10, status="processed")) == record.id
        found = await store.get(OWNER, record.id, now=NOW)
        assert found is not None
        records.append(found)
    return records


async def test_a_claim_costs_one_transaction_of_the_same_statements_for_any_batch(
    store: SQLMetadataStore,
) -> None:
    await expiring(store, 15)
    tallies = []
    for limit in (3, 12):
        with counted(store) as tally:
            claimed = await store.claim_for_sweep(now=LATER, stale_before=0, limit=limit)
        assert len(claimed) == limit
        tallies.append(tally)
    assert len(tallies[0].statements) == len(tallies[1].statements) <= 6
    assert [tally.transactions for tally in tallies] == [1, 1]
    assert (await store.usage(OWNER)).files == 0
    assert await store.claim_for_sweep(now=LATER, stale_before=0, limit=20) == []


async def test_a_claim_leaves_the_candidates_that_changed_since_they_were_read(
    store: SQLMetadataStore,
) -> None:
    # Read as the sweeper read them; then, before its claim, one is held, one deleted by a
    # client (``deleting`` now, not stale) and one claimed by another sweeper.
    held, deleted, rivals, kept = await expiring(store, 4)
    candidates = [held, deleted, rivals, kept]
    assert await store.hold(OWNER, held.id, "batch_1", now=NOW)
    assert await store.begin_delete(OWNER, deleted.id, now=NOW) is not None
    assert await store._claim([rivals], LATER) == [rivals]  # another sweeper's claim
    before = await store.usage(OWNER)

    claimed = await store._claim(candidates, LATER)

    assert claimed == [kept]
    after = await store.usage(OWNER)
    assert (after.files, after.bytes) == (before.files - 1, before.bytes - kept.bytes)
    assert await store.get(OWNER, held.id, now=LATER) == held.replace(hold_count=1)
    assert await store.claim_for_sweep(now=LATER, stale_before=0, limit=10) == []
