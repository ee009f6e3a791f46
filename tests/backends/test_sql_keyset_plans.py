"""A page after a cursor is an index range on every SQL backend: each database's own plan
(``EXPLAIN``) of the statement `SQLMetadataStore.list` sends, in both orders, with and without
the purpose filter, starts the owner's ``(owner, [purpose,] created_us, id)`` index at the
cursor's time instead of reading it from the owner's first file and filtering.

So a deep page costs what the first does, however many files the owner has (the scale
benchmark measures it at millions of files). On MariaDB an offset page (`list_at`) reads the
ids it steps over from that index alone and only its own rows from the table. The statement
is the one the store sends (caught with ``before_cursor_execute``) and is explained on a
connection of the same database, with the same parameters. No timing is asserted.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import AsyncIterator
from typing import Any

import pytest
from sqlalchemy import insert
from sqlalchemy.ext.asyncio import AsyncConnection

from openai_files import SQLMetadataStore
from openai_files.ids import new_file_id
from openai_files.metadata.base import Cursor, Order

from ..databases import SQL_KINDS, any_sql_store, statements_sent

pytestmark = pytest.mark.anyio

OWNER = "alice"
NOW = 1_700_000_000
T0 = NOW * 1_000_000
FILES = 3_000
PURPOSES = ("batch", "fine-tune")


@pytest.fixture(params=SQL_KINDS)
async def store(request: pytest.FixtureRequest, sqlite_url: str) -> AsyncIterator[SQLMetadataStore]:
    """A store whose owner has `FILES` files (three per microsecond) and another owner as many,
    written in bulk and analysed."""
    async with any_sql_store(request.param, sqlite_url) as store:
        await _fill(store)
        yield store


async def _fill(store: SQLMetadataStore) -> None:
    await store.create_schema()
    files = store.tables.files
    rows = [
        {
            "id": new_file_id(T0 + index // 3),
            "owner": owner,
            "purpose": PURPOSES[index % 2],
            "filename": "input.jsonl",
            "bytes": 1,
            "created_us": T0 + index // 3,
            "expires_at": None,
            "status": "processed",
            "status_details": None,
            "storage_key": secrets.token_hex(8),
            "sha256": None,
            "media_type": None,
            "state": "active",
            "changed_at": 0,
            "hold_count": 0,
            "etag": None,
        }
        for owner in (OWNER, "bob")
        for index in range(FILES)
    ]
    async with store.engine.begin() as connection:
        await connection.execute(insert(files), rows)
    analyse = {
        "sqlite": "ANALYZE",
        "postgresql": f"ANALYZE {files.name}",
        "mysql": f"ANALYZE TABLE {files.name}",
        "mariadb": f"ANALYZE TABLE {files.name}",
    }[store.engine.dialect.name]
    async with store.engine.begin() as connection:
        await connection.exec_driver_sql(analyse)


async def _sent_page(
    store: SQLMetadataStore, order: Order, purpose: str | None, after: Cursor
) -> tuple[str, Any]:
    """The statement (and its parameters) that `SQLMetadataStore.list` sends for the page."""
    with statements_sent(store) as sent:
        page = await store.list(OWNER, now=NOW, purpose=purpose, after=after, limit=20, order=order)
    assert len(page) == 20  # the cursor is in the middle: a full page follows it
    selects = [one for one in sent if one[0].lstrip().upper().startswith("SELECT")]
    assert len(selects) == 1
    return selects[0]


async def _plan(connection: AsyncConnection, dialect: str, statement: str, parameters: Any) -> str:
    """The database's plan of the statement, as text."""
    if dialect == "sqlite":
        rows = await connection.exec_driver_sql(f"EXPLAIN QUERY PLAN {statement}", parameters)
        return "\n".join(str(row[-1]) for row in rows)
    if dialect == "postgresql":
        # Forbid the plans a table this small may win with (a sequential scan and a sort):
        # what is asked is whether the cursor can bound an index scan.
        for setting in ("enable_seqscan", "enable_bitmapscan", "enable_sort"):
            await connection.exec_driver_sql(f"SET {setting} = off")
    explain = "EXPLAIN (FORMAT JSON)" if dialect == "postgresql" else "EXPLAIN FORMAT=JSON"
    rows = await connection.exec_driver_sql(f"{explain} {statement}", parameters)
    found = rows.scalar_one()
    return found if isinstance(found, str) else json.dumps(found)


@pytest.mark.parametrize("order", ["asc", "desc"])
@pytest.mark.parametrize("purpose", [None, "batch"])
async def test_a_page_after_a_cursor_reads_the_owners_index_from_the_cursor(
    store: SQLMetadataStore, order: Order, purpose: str | None
) -> None:
    middle = T0 + FILES // 6
    after = (middle, new_file_id(middle))
    statement, parameters = await _sent_page(store, order, purpose, after)
    dialect = store.engine.dialect.name
    index = f"{store.table_prefix}files_by_owner" + ("_purpose" if purpose else "")
    async with store.engine.connect() as connection:
        plan = await _plan(connection, dialect, statement, parameters)
    bound = "<" if order == "desc" else ">"
    if dialect == "sqlite":
        by = "owner=? AND purpose=?" if purpose else "owner=?"
        assert f"USING INDEX {index} ({by} AND created_us{bound}?)" in plan, plan
    elif dialect == "postgresql":
        scan = json.loads(plan)[0]["Plan"]["Plans"][0]
        assert scan["Index Name"] == index, plan
        assert f"(created_us {bound}= " in scan["Index Cond"], plan
    else:
        table = json.loads(plan)["query_block"]
        table = table.get("nested_loop", [table])[0]["table"]
        assert table["access_type"] == "range", plan
        assert table["key"] == index, plan
        parts = ["owner", "purpose", "created_us"] if purpose else ["owner", "created_us"]
        assert table["used_key_parts"] == parts, plan


@pytest.fixture
async def mariadb_store(sqlite_url: str) -> AsyncIterator[SQLMetadataStore]:
    """`store`, on MariaDB."""
    async with any_sql_store("mariadb", sqlite_url) as store:
        await _fill(store)
        yield store


@pytest.mark.parametrize("order", ["asc", "desc"])
async def test_an_offset_page_on_mariadb_reads_the_rows_of_its_own_files_only(
    mariadb_store: SQLMetadataStore, order: Order
) -> None:
    store = mariadb_store
    with statements_sent(store) as sent:
        page = await store.list_at(OWNER, now=NOW, offset=1_000, limit=20, order=order)
    assert len(page) == 20
    assert len(sent) == 1
    async with store.engine.connect() as connection:
        plan = json.loads(await _plan(connection, "mariadb", *sent[0]))
    loop = plan["query_block"]["filesort"]["temporary_table"]["nested_loop"]
    derived, rows = loop[0]["table"], loop[1]["table"]
    inner = derived["materialized"]["query_block"]["nested_loop"][0]["table"]
    assert inner["key"] == f"{store.table_prefix}files_by_owner", plan
    assert inner.get("using_index") is True, plan  # the files stepped over: the index alone
    assert rows["key"] == "PRIMARY", plan
    assert rows["access_type"] == "eq_ref", plan  # then one row for each file of the page
