"""The SQL store's list order is its ``ORDER BY``, not the order an index happens to return.

The listing indexes hold ``(owner, created_us, id)``, so a planner that walks one returns ties
on the creation time in id order even if the query forgot to ask for it. Here each of those
indexes is made again under its own name (MariaDB's queries name it) with ``id`` descending, and
the records are written in neither id order nor its reverse: whichever way a planner reads, only
an ``ORDER BY`` on both columns lists them right, by cursor and by offset, both ways, with and
without a purpose.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.schema import DropIndex

from openai_files import SQLMetadataStore
from openai_files.metadata.base import FileRecord, Order
from openai_files.testing import make_record

from ..databases import sql_store

pytestmark = pytest.mark.anyio

NOW = 1_800_000_000
T0 = NOW * 1_000_000
ORDERS: tuple[Order, ...] = ("asc", "desc")


@pytest.fixture(params=["sqlite", "postgresql", "mariadb"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[SQLMetadataStore]:
    """A store whose listing indexes hold ``id`` descending."""
    if request.param == "sqlite":
        sqlite = SQLMetadataStore(f"sqlite+aiosqlite:///{tmp_path / 'files.db'}")
        await _with_listing_ids_reversed(sqlite)
        yield sqlite
        await sqlite.aclose()
        return
    async with sql_store(request.param) as server_store:
        await _with_listing_ids_reversed(server_store)
        yield server_store


async def _with_listing_ids_reversed(store: SQLMetadataStore) -> None:
    await store.create_schema()
    files = store.tables.files
    listing = [index for index in files.indexes if "created_us" in index.columns]
    assert len(listing) == 2, [index.name for index in files.indexes]
    async with store.engine.begin() as connection:
        for index in listing:
            await connection.execute(DropIndex(index))
            columns = ", ".join(
                f"{c.name} DESC" if c.name == "id" else c.name for c in index.columns
            )
            await connection.execute(text(f"CREATE INDEX {index.name} ON {files.name} ({columns})"))


async def _write_shuffled(store: SQLMetadataStore) -> list[FileRecord]:
    """Three microseconds of six records each, two purposes, written in an order unrelated to
    their ids; returned in ``(created_us, id)`` order."""
    records = [
        make_record(created_us=T0 + index // 6, purpose=("batch", "vision")[index % 2])
        for index in range(18)
    ]
    written = sorted(records, key=lambda record: record.id[-5:])
    expected = sorted(records, key=lambda record: record.cursor)
    assert written not in (expected, expected[::-1])
    for record in written:
        await store.insert(record)
    return expected


async def test_the_list_breaks_ties_by_id_whatever_order_its_index_holds(
    store: SQLMetadataStore,
) -> None:
    expected = await _write_shuffled(store)
    for order in ORDERS:
        for purpose in (None, "vision"):
            want = [r.id for r in expected if purpose is None or r.purpose == purpose]
            want = want if order == "asc" else want[::-1]
            whole = await store.list("alice", now=NOW, purpose=purpose, limit=20, order=order)
            assert [record.id for record in whole] == want
            seen: list[str] = []
            after = None
            while page := await store.list(
                "alice", now=NOW, purpose=purpose, after=after, limit=4, order=order
            ):
                seen += [record.id for record in page]
                after = page[-1].cursor
            assert seen == want


async def test_offset_pages_break_ties_by_id_whatever_order_its_index_holds(
    store: SQLMetadataStore,
) -> None:
    expected = await _write_shuffled(store)
    for order in ORDERS:
        want = [r.id for r in expected] if order == "asc" else [r.id for r in expected][::-1]
        seen: list[str] = []
        for offset in range(0, 18, 4):
            page = await store.list_at("alice", now=NOW, offset=offset, limit=4, order=order)
            seen += [record.id for record in page]
        assert seen == want
