"""PostgreSQL reads a page of files from the owner's index whatever the table's statistics say.

The connections of an engine the store makes on PostgreSQL start with ``enable_sort`` and ``jit``
off (`POSTGRES_SETTINGS`): without statistics (a new or fast-grown table before autovacuum's
``ANALYZE``, or autovacuum off) the planner took an owner's files for a handful, and read and
sorted every one of them for each page rather than reading the ``(owner, [purpose,]
created_us, id)`` index backwards for the page alone. The statement explained is the one
`SQLMetadataStore.list` sends (caught with ``before_cursor_execute``), on a connection of the
store's own engine, in a table filled in bulk and never analysed. A host's settings, and a
host's own engine, are left as they are. No timing is asserted.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import AsyncIterator
from typing import Any

import pytest
from sqlalchemy import insert
from sqlalchemy.ext.asyncio import create_async_engine

from openai_files import SQLMetadataStore
from openai_files.ids import new_file_id
from openai_files.metadata._sql_connect import POSTGRES_SETTINGS, postgres_connect_args
from openai_files.metadata.base import Order

from ..databases import (
    drop_tables,
    require_database,
    sql_store,
    statements_sent,
    unique_prefix,
)

pytestmark = pytest.mark.anyio

OWNER = "alice"
NOW = 1_700_000_000
T0 = NOW * 1_000_000
FILES = 3_000
PURPOSES = ("batch", "assistants")


@pytest.fixture
async def store() -> AsyncIterator[SQLMetadataStore]:
    """A PostgreSQL store whose owner has `FILES` files and another owner as many, written in
    bulk after the tables were made, and not analysed."""
    async with sql_store("postgresql") as served:
        await served.create_schema()
        rows = [
            {
                "id": new_file_id(T0 + index),
                "owner": owner,
                "purpose": PURPOSES[index % 2],
                "filename": "small.txt",
                "bytes": 1024,
                "created_us": T0 + index,
                "expires_at": None,
                "status": "processed",
                "status_details": None,
                "storage_key": secrets.token_hex(8),
                "sha256": None,
                "media_type": "text/plain",
                "state": "active",
                "changed_at": NOW,
                "hold_count": 0,
                "etag": None,
            }
            for owner in (OWNER, "bob")
            for index in range(FILES)
        ]
        async with served.engine.begin() as connection:
            await connection.execute(insert(served.tables.files), rows)
        yield served


async def _sent_page(store: SQLMetadataStore, order: Order, purpose: str | None) -> Any:
    """The statement and parameters `SQLMetadataStore.list` sends for a first page of 20."""
    with statements_sent(store) as sent:
        page = await store.list(OWNER, now=NOW, purpose=purpose, limit=21, order=order)
    assert len(page) == 21
    assert len(sent) == 1
    return sent[0]


def _nodes(plan: dict[str, Any]) -> list[dict[str, Any]]:
    """Every node of a plan of ``EXPLAIN (FORMAT JSON)``, from the top."""
    return [plan, *(node for child in plan.get("Plans", ()) for node in _nodes(child))]


@pytest.mark.parametrize("order", ["asc", "desc"])
@pytest.mark.parametrize("purpose", [None, "batch"])
async def test_a_first_page_reads_the_owners_index_in_order_without_statistics(
    store: SQLMetadataStore, order: Order, purpose: str | None
) -> None:
    statement, parameters = await _sent_page(store, order, purpose)
    async with store.engine.connect() as connection:
        explained = await connection.exec_driver_sql(
            f"EXPLAIN (ANALYZE, FORMAT JSON) {statement}", parameters
        )
        found = explained.scalar_one()
    plan = (json.loads(found) if isinstance(found, str) else found)[0]["Plan"]
    nodes = _nodes(plan)
    assert [node["Node Type"] for node in nodes] == ["Limit", "Index Scan"], plan
    scan = nodes[1]
    index = f"{store.table_prefix}files_by_owner" + ("_purpose" if purpose else "")
    assert scan["Index Name"] == index, plan
    assert scan["Scan Direction"] == ("Forward" if order == "asc" else "Backward"), plan
    # The page alone is read, not every file of the owner.
    assert scan["Actual Rows"] == 21, plan


async def _shown(store: SQLMetadataStore, *names: str) -> list[str]:
    """The values of the settings ``names`` on a connection of the store's engine."""
    async with store.engine.connect() as connection:
        return [
            str((await connection.exec_driver_sql(f"SHOW {name}")).scalar_one()) for name in names
        ]


async def test_the_connections_of_the_stores_engine_start_with_its_settings() -> None:
    async with sql_store("postgresql") as store:
        assert await _shown(store, *POSTGRES_SETTINGS) == list(POSTGRES_SETTINGS.values())


async def test_a_setting_in_the_engine_options_wins_and_the_others_stay() -> None:
    url, prefix = require_database("postgresql"), unique_prefix()
    options = {"connect_args": {"server_settings": {"enable_sort": "on"}, "timeout": 30}}
    store = SQLMetadataStore(url, table_prefix=prefix, engine_options=options)
    try:
        assert await _shown(store, "enable_sort", "jit") == ["on", "off"]
    finally:
        await store.aclose()
        await drop_tables(url, prefix)


async def test_a_hosts_engine_is_left_with_its_own_settings() -> None:
    url, prefix = require_database("postgresql"), unique_prefix()
    engine = create_async_engine(url)
    store = SQLMetadataStore(engine, table_prefix=prefix)
    try:
        async with engine.connect() as connection:
            default = (await connection.exec_driver_sql("SHOW enable_sort")).scalar_one()
        assert await _shown(store, "enable_sort") == [default]
    finally:
        await store.aclose()
        await engine.dispose()
        await drop_tables(url, prefix)


def test_the_connect_arguments_keep_the_hosts_and_add_the_stores_settings_under_them() -> None:
    assert postgres_connect_args(None) == {"server_settings": dict(POSTGRES_SETTINGS)}
    given = {"timeout": 5, "server_settings": {"jit": "on", "application_name": "gateway"}}
    assert postgres_connect_args(given) == {
        "timeout": 5,
        "server_settings": {**POSTGRES_SETTINGS, "jit": "on", "application_name": "gateway"},
    }
    assert given == {"timeout": 5, "server_settings": {"jit": "on", "application_name": "gateway"}}
