"""Tenants never merge: owners and idempotency keys are compared exactly, on every store.

- Owners that differ only by a trailing space are two tenants: neither lists, reads or deletes
  the other's files (MariaDB compared owners with a PAD SPACE collation).
- ``Idempotency-Key`` values that differ by case or by an accent are different keys: each
  upload makes its own file (MariaDB compared keys ignoring case and accents).
- A database made at schema version 1 is upgraded in place when the store starts.
- A key whose file expired (swept or not) or was deleted starts a new file, never a 404.

The stores' side of these rules is in the conformance suite (`openai_files.testing`); here
they are held over HTTP against a real server, and the upgrade against each database.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from sqlalchemy import Connection, insert, select, text
from sqlalchemy.ext.asyncio import create_async_engine
from starlette.types import ASGIApp, Receive, Scope, Send

from openai_files import (
    FilesService,
    MemoryMetadataStore,
    MemoryStorage,
    MetadataStore,
    SQLMetadataStore,
    create_app,
    scope_owner_auth,
)
from openai_files.http.auth import SCOPE_OWNER_KEY
from openai_files.metadata.base import Usage
from openai_files.metadata.sql_migrations import upgrade
from openai_files.metadata.sql_schema import (
    MARIADB_EXACT_COLLATION,
    SCHEMA_VERSION,
    ExactString,
    Tables,
)
from openai_files.testing import make_record

from ..databases import drop_tables, require_database, unique_prefix
from ..sql_schema_v1 import VERSION as V1
from ..sql_schema_v1 import v1_metadata
from ..support import BATCH_LINE, serve

SQL_SERVERS = ["sqlite", "postgresql", "mariadb"]
HOUR = 3600
# Tokens a host's own authentication maps to owners (see `hosted`).
TOKENS = {"tok-alice": "alice", "tok-alice-space": "alice "}
# Owners no store can hold or tell apart, which a careless host might hand over.
BAD_OWNERS = {
    "tok-nul": "bob\x00",
    "tok-surrogate": "bob\ud800",
    "tok-newline": "bob\r\n",
    "tok-bidi": "bob\u202e",
    "tok-long": "b" * 256,
}
TOKENS.update(BAD_OWNERS)


def database_url(server: str, tmp_path: Path) -> str:
    """The URL of ``server`` (failing under CI=true, else skipping, when it is down)."""
    if server == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'files.db'}"
    return require_database(server)


class HostAuth:
    """A host's own authentication: a bearer token becomes the owner in the ASGI scope, which
    the files app reads with `scope_owner_auth`."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            headers = dict(scope["headers"])
            token = headers.get(b"authorization", b"").removeprefix(b"Bearer ").decode()
            if token in TOKENS:
                scope = {**scope, SCOPE_OWNER_KEY: TOKENS[token]}
        await self.app(scope, receive, send)


@dataclass
class Hosted:
    """A files app served by uvicorn behind `HostAuth`, on a clock the test moves."""

    url: str
    now: list[float]

    def client(self, token: str = "tok-alice") -> httpx.Client:
        return httpx.Client(
            base_url=self.url + "/v1",
            headers={"authorization": f"Bearer {token}"},
            trust_env=False,
            timeout=30,
        )


@contextmanager
def hosted(store: str, tmp_path: Path) -> Iterator[Hosted]:
    """Serve a files app over memory storage and the ``store`` metadata store."""
    now = [float(int(time.time()))]
    prefix = unique_prefix()
    url = None if store == "memory" else database_url(store, tmp_path)
    metadata: MetadataStore = (
        MemoryMetadataStore() if url is None else SQLMetadataStore(url, table_prefix=prefix)
    )
    # Built here, used only on the server's loop: the store connects there, and the app closes it.
    service = FilesService(MemoryStorage(), metadata, clock=lambda: now[0])
    app = create_app(service, auth=scope_owner_auth(), close_service=True)
    try:
        with serve(HostAuth(app)) as server:
            yield Hosted(server.url, now)
    finally:
        if url is not None:
            asyncio.run(drop_tables(url, prefix))


def upload(
    client: httpx.Client,
    content: bytes = BATCH_LINE,
    *,
    key: bytes | None = None,
    expires_after: int | None = None,
) -> httpx.Response:
    fields: list[tuple[str, Any]] = [("purpose", (None, "assistants"))]
    if expires_after is not None:
        fields += [
            ("expires_after[anchor]", (None, "created_at")),
            ("expires_after[seconds]", (None, str(expires_after))),
        ]
    fields.append(("file", ("notes.txt", content)))
    headers: dict[bytes, bytes] = {} if key is None else {b"idempotency-key": key}
    response = client.post("/files", files=fields, headers=headers)
    assert response.status_code == 200, response.text
    return response


def listed(client: httpx.Client) -> list[str]:
    return [f["id"] for f in client.get("/files").json()["data"]]


# -- owners ------------------------------------------------------------------------------------


@pytest.mark.parametrize("store", SQL_SERVERS)
def test_owners_differing_by_a_trailing_space_never_see_each_others_files(
    store: str, tmp_path: Path
) -> None:
    with (
        hosted(store, tmp_path) as server,
        server.client("tok-alice") as alice,
        server.client("tok-alice-space") as other,
    ):
        mine = upload(alice).json()["id"]
        assert listed(other) == []
        for path in (f"/files/{mine}", f"/files/{mine}/content"):
            assert other.get(path).status_code == 404
        assert other.delete(f"/files/{mine}").status_code == 404
        theirs = upload(other).json()["id"]
        assert listed(other) == [theirs]
        assert listed(alice) == [mine]
        assert alice.get(f"/files/{mine}/content").content == BATCH_LINE


# -- idempotency keys --------------------------------------------------------------------------


@pytest.mark.parametrize("store", SQL_SERVERS)
def test_idempotency_keys_differing_by_case_or_accent_make_separate_files(
    store: str, tmp_path: Path
) -> None:
    # Header values are Latin-1 on the wire: b"\xe9" is "é".
    keys = [b"Report-2024", b"report-2024", "réport-2024".encode("latin-1")]
    with hosted(store, tmp_path) as server, server.client() as alice:
        created = [upload(alice, b"%d\n" % index, key=key).json() for index, key in enumerate(keys)]
        assert len({file["id"] for file in created}) == len(keys)
        for index, (key, file) in enumerate(zip(keys, created, strict=True)):
            again = upload(alice, b"retry\n", key=key).json()
            assert again["id"] == file["id"]
            assert alice.get(f"/files/{file['id']}/content").content == b"%d\n" % index
        assert sorted(listed(alice)) == sorted(file["id"] for file in created)


@pytest.mark.parametrize("store", ["memory", *SQL_SERVERS])
def test_an_idempotency_key_whose_file_expired_unswept_starts_a_new_file(
    store: str, tmp_path: Path
) -> None:
    with hosted(store, tmp_path) as server, server.client() as alice:
        first = upload(alice, b"first\n", key=b"nightly", expires_after=HOUR).json()
        server.now[0] += HOUR  # expired, and no sweeper has run
        second = upload(alice, b"second\n", key=b"nightly").json()
        assert second["id"] != first["id"]
        assert alice.get(f"/files/{second['id']}/content").content == b"second\n"
        assert upload(alice, b"retry\n", key=b"nightly").json() == second
        assert listed(alice) == [second["id"]]


@pytest.mark.parametrize("store", ["memory", *SQL_SERVERS])
def test_an_idempotency_key_whose_file_was_deleted_starts_a_new_file(
    store: str, tmp_path: Path
) -> None:
    with hosted(store, tmp_path) as server, server.client() as alice:
        first = upload(alice, b"first\n", key=b"nightly").json()
        assert alice.delete(f"/files/{first['id']}").status_code == 200
        second = upload(alice, b"second\n", key=b"nightly").json()
        assert second["id"] != first["id"]
        assert listed(alice) == [second["id"]]


@pytest.mark.parametrize("store", ["memory", *SQL_SERVERS])
def test_concurrent_uploads_with_the_key_of_an_expired_file_make_one_file(
    store: str, tmp_path: Path
) -> None:
    with hosted(store, tmp_path) as server, server.client() as alice:
        upload(alice, b"first\n", key=b"nightly", expires_after=HOUR)
        server.now[0] += HOUR
        with ThreadPoolExecutor(6) as pool:
            answers = list(
                pool.map(lambda n: upload(alice, b"%d\n" % n, key=b"nightly").json(), range(6))
            )
        assert len({answer["id"] for answer in answers}) == 1
        assert listed(alice) == [answers[0]["id"]]


# -- upgrading a version 1 database ------------------------------------------------------------


async def _create_v1(url: str, prefix: str, rows: Callable[[Connection], None]) -> None:
    engine = create_async_engine(url)
    metadata = v1_metadata(prefix)
    async with engine.begin() as connection:
        await connection.run_sync(metadata.create_all)
        await connection.run_sync(rows)
    await engine.dispose()


def _exact_columns(tables: Tables) -> list[tuple[str, str]]:
    return [
        (table.name, column.name)
        for table in tables.metadata.sorted_tables
        for column in table.columns
        if isinstance(column.type, ExactString)
    ]


async def _collations(store: SQLMetadataStore) -> set[str | None]:
    """The collation of every `ExactString` column of ``store`` on MariaDB."""
    found: set[str | None] = set()
    async with store.engine.connect() as connection:
        for table, column in _exact_columns(store.tables):
            query = text(
                "SELECT collation_name FROM information_schema.columns"
                " WHERE table_schema = DATABASE() AND table_name = :t AND column_name = :c"
            )
            found.add((await connection.execute(query, {"t": table, "c": column})).scalar_one())
    return found


@pytest.mark.anyio
@pytest.mark.parametrize("server", SQL_SERVERS)
async def test_a_version_1_database_is_upgraded_in_place_with_its_rows_intact(
    server: str, tmp_path: Path
) -> None:
    url, prefix = database_url(server, tmp_path), unique_prefix()
    tables = Tables.named(prefix)
    alice = make_record("alice", expires_at=None)
    spaced = make_record("alice ", created_us=alice.created_us + 1)
    merged = server == "mariadb"  # where version 1 counted both owners in one usage row

    v1_usage = v1_metadata(prefix).tables[f"{prefix}usage"]  # without later columns

    def rows(connection: Connection) -> None:
        connection.execute(insert(tables.version).values(version=V1))
        for record in (alice, spaced):
            connection.execute(insert(tables.files).values(**vars(record)))
        if merged:
            connection.execute(insert(v1_usage).values(owner="alice", files=2, bytes=24))
        else:
            for owner in ("alice", "alice "):
                connection.execute(insert(v1_usage).values(owner=owner, files=1, bytes=12))
        connection.execute(
            insert(tables.idempotency).values(
                owner="alice", key="Report-2024", file_id=alice.id, created_at=0
            )
        )

    await _create_v1(url, prefix, rows)
    stores = [SQLMetadataStore(url, table_prefix=prefix) for _ in range(2)]
    try:
        async with anyio.create_task_group() as group:  # two replicas start at once
            for store in stores:
                group.start_soon(store.create_schema)
        store = stores[0]
        async with store.engine.connect() as connection:
            versions = (await connection.execute(select(tables.version.c.version))).scalars()
            assert set(versions) == {SCHEMA_VERSION}
        if server == "mariadb":
            assert await _collations(store) == {MARIADB_EXACT_COLLATION}
        now = alice.created_at
        assert await store.get("alice", alice.id, now=now) == alice
        assert await store.get("alice ", spaced.id, now=now) == spaced
        assert await store.get("alice ", alice.id, now=now) is None
        assert [r.id for r in await store.list("alice", now=now, limit=10)] == [alice.id]
        assert await store.usage("alice") == Usage(files=1, bytes=12)
        assert await store.usage("alice ") == Usage(files=1, bytes=12)
        assert await store.count("alice", now=now) == 1  # version 4's counts
        assert await store.idempotent_file("alice", "Report-2024", since=0) == alice.id
        assert await store.idempotent_file("alice", "report-2024", since=0) is None
        async with store.engine.connect() as connection:  # a step run again changes nothing
            await connection.run_sync(upgrade, store.tables, V1)
        assert await store.get("alice", alice.id, now=now) == alice
    finally:
        for store in stores:
            await store.aclose()
        await drop_tables(url, prefix)


@pytest.mark.parametrize("store", SQL_SERVERS)
@pytest.mark.parametrize("token", sorted(BAD_OWNERS))
def test_an_owner_no_store_can_hold_is_401_never_a_5xx(
    store: str, token: str, tmp_path: Path
) -> None:
    """An owner from the host's auth with a NUL, a lone surrogate, a control or bidi character,
    or over 255 characters is refused as unauthenticated before it reaches a store (it was a
    500, or on PostgreSQL a 503 that clients retry)."""
    with hosted(store, tmp_path) as server, server.client(token) as client:
        listed = client.get("/files")
        created = client.post(
            "/files", files={"file": ("a.jsonl", BATCH_LINE)}, data={"purpose": "batch"}
        )
        opened = client.post(
            "/uploads",
            json={
                "filename": "a.txt",
                "purpose": "assistants",
                "bytes": 1,
                "mime_type": "text/plain",
            },
        )
        for answer in (listed, created, opened):
            assert answer.status_code == 401, answer.text
            assert "not authenticated" in answer.json()["error"]["message"]
        with server.client() as alice:
            assert alice.get("/files").json()["data"] == []
