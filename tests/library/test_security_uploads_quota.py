"""The Uploads API within the owner's quota: parts count as they arrive, open uploads and parts
per upload are bounded, and adding or naming parts costs the same at part 1 and part 2,500.

Over HTTP against real servers: the quota findings on SQLite, PostgreSQL and MariaDB (where the
accounting lives), the races through two ``openai-files serve`` replicas sharing PostgreSQL.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from threading import Barrier
from typing import Any, TypedDict, TypeVar

import anyio
import httpx
import pytest
from sqlalchemy import delete, insert, select, update

from openai_files import (
    FilesService,
    LocalStorage,
    MemoryMetadataStore,
    MemoryStorage,
    Policy,
    SQLMetadataStore,
    api_key_auth,
    create_app,
)
from openai_files.http._uploads_api import MAX_JSON_BODY, completion_body_limit
from openai_files.metadata.base import Quota, Usage
from openai_files.metadata.sql_migrations import upgrade as upgrade_tables
from openai_files.testing import FaultyMetadataStore
from openai_files.testing.metadata import make_record

from ..clusters import KEY, Cluster
from ..databases import POSTGRES_URL, drop_tables, require_database, unique_prefix
from ..s3_servers import S3Server
from ..support import serve, server_process, stored_files

_T = TypeVar("_T")

KEYS = {"sk-alice": "alice", "sk-bob": "bob"}
ALICE = {"authorization": "Bearer sk-alice"}
BOB = {"authorization": "Bearer sk-bob"}
T0 = 1_760_000_000.0
QUOTA = 100_000


class UploadFields(TypedDict):
    filename: str
    purpose: str
    mime_type: str


UPLOAD = UploadFields(
    filename="data.bin", purpose="assistants", mime_type="application/octet-stream"
)


class Clock:
    """A clock that stands still until a test moves it (from any thread)."""

    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now


def error_of(response: httpx.Response, status: int, code: str | None = None) -> dict[str, Any]:
    assert response.status_code == status, response.text
    error: dict[str, Any] = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}, error
    assert error["type"] == "invalid_request_error", error
    if code is not None:
        assert error["code"] == code, error
    return error


# -- a server over one database, a clock the test moves ------------------------------------


@dataclass
class Database:
    url: str
    prefix: str

    def store(self) -> SQLMetadataStore:
        return SQLMetadataStore(self.url, table_prefix=self.prefix)

    def run(self, work: Callable[[SQLMetadataStore], Awaitable[_T]]) -> _T:
        """``work`` over a store of its own (its own engine, on its own event loop)."""

        async def main() -> _T:
            store = self.store()
            try:
                return await work(store)
            finally:
                await store.aclose()

        return anyio.run(main)

    def usage(self, owner: str = "alice") -> Usage:
        return self.run(lambda store: store.usage(owner))


@pytest.fixture(params=["sqlite", "postgresql", "mariadb"])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    if request.param == "sqlite":
        yield Database(f"sqlite+aiosqlite:///{tmp_path / 'files.db'}", "openai_files_")
        return
    url = require_database(request.param)
    found = Database(url, unique_prefix())
    yield found
    anyio.run(drop_tables, found.url, found.prefix)


@dataclass
class Server:
    """Raw HTTP to a real server, as Alice unless told otherwise."""

    http: httpx.Client
    clock: Clock
    root: Path
    database: Database

    def create(self, size: int, headers: dict[str, str] = ALICE) -> httpx.Response:
        return self.http.post("/v1/uploads", json={**UPLOAD, "bytes": size}, headers=headers)

    def created(self, size: int) -> str:
        response = self.create(size)
        assert response.status_code == 200, response.text
        upload_id: str = response.json()["id"]
        return upload_id

    def part(self, upload_id: str, size: int) -> httpx.Response:
        data = secrets.token_bytes(size)
        return self.http.post(
            f"/v1/uploads/{upload_id}/parts",
            files={"data": ("part", data, "application/octet-stream")},
            headers=ALICE,
        )

    def added(self, upload_id: str, size: int) -> str:
        response = self.part(upload_id, size)
        assert response.status_code == 200, response.text
        part_id: str = response.json()["id"]
        return part_id

    def complete(self, upload_id: str, part_ids: list[str]) -> httpx.Response:
        return self.http.post(
            f"/v1/uploads/{upload_id}/complete", json={"part_ids": part_ids}, headers=ALICE
        )

    def cancel(self, upload_id: str) -> httpx.Response:
        return self.http.post(f"/v1/uploads/{upload_id}/cancel", headers=ALICE)

    def part_files(self) -> list[str]:
        return [key for key in stored_files(self.root) if key.startswith("uploads/")]

    def usage_settles_at(self, expected: Usage, timeout: float = 10) -> None:
        deadline = time.monotonic() + timeout
        while (usage := self.database.usage()) != expected and time.monotonic() < deadline:
            time.sleep(0.05)
        assert usage == expected


@contextmanager
def running(database: Database, root: Path, policy: Policy) -> Iterator[Server]:
    """``create_app`` served by uvicorn on loopback, sweeping every 50 ms."""
    clock = Clock()
    service = FilesService(LocalStorage(root), database.store(), policy=policy, clock=clock)
    app = create_app(service, auth=api_key_auth(KEYS), sweep_interval=0.05, close_service=True)
    with serve(app) as server, httpx.Client(base_url=server.url, timeout=60) as http:
        yield Server(http, clock, root, database)


# -- finding 3: the byte quota covers the Uploads API ----------------------------------------


def test_parts_count_against_the_byte_quota_as_they_arrive(
    database: Database, tmp_path: Path
) -> None:
    """Under a 100,000-byte quota one owner stored 2,970,000 bytes of parts in three uploads:
    now every part's bytes are reserved against the quota before they are stored."""
    policy = Policy(quota=Quota(max_bytes=QUOTA))
    with running(database, tmp_path / "blobs", policy) as server:
        first, second, third = (server.created(60_000) for _ in range(3))
        server.added(first, 60_000)
        error = error_of(server.part(second, 60_000), 400, "quota_exceeded")
        assert str(QUOTA) in error["message"]
        server.added(second, 40_000)  # exactly what is left
        error_of(server.part(third, 1), 400, "quota_exceeded")
        assert server.database.usage() == Usage(files=0, bytes=QUOTA, open_uploads=3)
        assert len(server.part_files()) == 2  # the refused parts left nothing behind
        stored = server.http.post(
            "/v1/files",
            files={"file": ("a.txt", b"a")},
            data={"purpose": "assistants"},
            headers=ALICE,
        )
        error_of(stored, 400, "quota_exceeded")
        assert server.create(60_000, headers=BOB).status_code == 200  # a quota per owner


def test_a_part_beyond_the_declared_bytes_is_refused_and_leaves_nothing(
    database: Database, tmp_path: Path
) -> None:
    """Each upload could hold up to 8 GiB of parts whatever ``bytes`` it declared."""
    with running(database, tmp_path / "blobs", Policy()) as server:
        upload = server.created(100)
        parts = [server.added(upload, 60)]
        error = error_of(server.part(upload, 41), 413, "file_too_large")
        assert error["param"] == "data"
        assert "declared 100 bytes" in error["message"]
        assert "at most 40 more" in error["message"]
        assert len(server.part_files()) == 1
        parts.append(server.added(upload, 40))
        error_of(server.part(upload, 1), 413, "file_too_large")
        done = server.complete(upload, parts)
        assert done.status_code == 200, done.text
        assert done.json()["file"]["bytes"] == 100


def test_cancel_expiry_and_completion_give_the_parts_bytes_back(
    database: Database, tmp_path: Path
) -> None:
    """Parts count until their bytes are gone; the file an upload makes counts instead, and a
    completion that fills the quota exactly is not refused for the parts it replaces."""
    policy = Policy(quota=Quota(max_bytes=QUOTA))
    with running(database, tmp_path / "blobs", policy) as server:
        cancelled = server.created(QUOTA)
        server.added(cancelled, QUOTA)
        assert server.database.usage() == Usage(files=0, bytes=QUOTA, open_uploads=1)
        assert server.cancel(cancelled).status_code == 200
        assert server.database.usage() == Usage(files=0, bytes=0, open_uploads=0)

        expiring = server.created(QUOTA)
        server.added(expiring, QUOTA)
        error_of(server.create(10), 400, "quota_exceeded")  # its parts fill the quota
        server.clock.now += policy.upload_ttl  # the sweeper expires both, discards the part
        server.usage_settles_at(Usage(files=0, bytes=0, open_uploads=0))
        assert server.part_files() == []

        completed = server.created(QUOTA)
        parts = [server.added(completed, QUOTA // 2) for _ in range(2)]
        done = server.complete(completed, parts)
        assert done.status_code == 200, done.text
        assert server.database.usage() == Usage(files=1, bytes=QUOTA, open_uploads=0)
        assert server.part_files() == []
        error_of(server.create(1), 400, "quota_exceeded")
        deleted = server.http.delete(f"/v1/files/{done.json()['file']['id']}", headers=ALICE)
        assert deleted.status_code == 200
        assert server.database.usage() == Usage(files=0, bytes=0, open_uploads=0)


def test_open_uploads_are_bounded_per_owner(database: Database, tmp_path: Path) -> None:
    """300 uploads opened in 3 seconds, none refused: now the policy bounds them per owner,
    atomically in the store, refused as quotas are (400 ``quota_exceeded``)."""
    with running(database, tmp_path / "blobs", Policy(max_open_uploads=5)) as server:
        uploads = [server.created(10) for _ in range(5)]
        error = error_of(server.create(10), 400, "quota_exceeded")
        assert "open uploads" in error["message"]
        assert "5" in error["message"]
        assert server.create(10, headers=BOB).status_code == 200
        assert server.cancel(uploads[0]).status_code == 200
        uploads.append(server.created(10))
        assert server.complete(uploads[1], [server.added(uploads[1], 10)]).status_code == 200
        uploads.append(server.created(10))
        error_of(server.create(10), 400, "quota_exceeded")
        server.clock.now += 3600  # expired uploads are no longer open
        server.usage_settles_at(Usage(files=1, bytes=10, open_uploads=0))
        assert [server.created(10) for _ in range(5)]


def test_an_expired_upload_not_yet_swept_does_not_hold_its_place() -> None:
    async def main() -> None:
        clock = Clock()
        policy = Policy(max_open_uploads=2)
        async with FilesService(
            MemoryStorage(), MemoryMetadataStore(), policy=policy, clock=clock
        ) as service:
            for _ in range(2):
                await service.uploads.create("alice", bytes=10, **UPLOAD)
            clock.now += policy.upload_ttl
            await service.uploads.create("alice", bytes=10, **UPLOAD)
            assert (await service.metadata.usage("alice")).open_uploads == 1

    anyio.run(main)


def opened(url: str, count: int) -> list[int]:
    """The statuses of ``count`` upload creates as Alice, one after the other."""
    with httpx.Client(base_url=url, headers=ALICE, timeout=30) as http:
        return [
            http.post("/v1/uploads", json={**UPLOAD, "bytes": 10}).status_code for _ in range(count)
        ]


def test_serve_bounds_open_uploads_by_default_and_by_flag(tmp_path: Path) -> None:
    key = ("--api-key", "sk-alice=alice", "--log-level", "warning")
    with server_process(tmp_path, "--max-bytes", str(QUOTA), *key) as server:
        assert opened(server.url, 101) == [200] * 100 + [400]
    (tmp_path / "b").mkdir()
    with server_process(tmp_path / "b", "--max-open-uploads", "2", *key) as server:
        assert opened(server.url, 3) == [200, 200, 400]


# -- races through two replicas sharing PostgreSQL ---------------------------------------


def all_at_once(
    count: int, request: Callable[[httpx.Client, int], httpx.Response], urls: tuple[str, str]
) -> list[httpx.Response]:
    """``request`` ``count`` times from threads of their own, alternating replicas, all released
    together."""
    start = Barrier(count)

    def one(index: int) -> httpx.Response:
        headers = {"authorization": f"Bearer {KEY}"}
        with httpx.Client(base_url=urls[index % 2], headers=headers, timeout=60) as client:
            start.wait()
            return request(client, index)

    with ThreadPoolExecutor(max_workers=count) as pool:
        return list(pool.map(one, range(count)))


def cluster_usage(cluster: Cluster) -> Usage:
    return Database(POSTGRES_URL, cluster.table_prefix).usage("tenant")


def test_exactly_the_bound_of_concurrent_creates_succeeds_through_two_replicas(
    cluster: Cluster,
) -> None:
    def create(client: httpx.Client, _: int) -> httpx.Response:
        return client.post("/v1/uploads", json={**UPLOAD, "bytes": 10})

    with cluster.two_replicas("--max-open-uploads", "5") as urls:
        responses = all_at_once(24, create, urls)
        created = [r for r in responses if r.status_code == 200]
        for refused in (r for r in responses if r.status_code != 200):
            error_of(refused, 400, "quota_exceeded")
        assert len(created) == 5
        assert cluster_usage(cluster) == Usage(files=0, bytes=0, open_uploads=5)


def test_concurrent_parts_through_two_replicas_never_pass_the_byte_quota(
    cluster: Cluster, moto: S3Server
) -> None:
    quota, size = 1024 * 1024, 100 * 1024
    bucket = cluster.storage_url.removeprefix("s3://").split("/", 1)[0]
    with cluster.two_replicas("--max-bytes", str(quota)) as urls:
        uploads = all_at_once(
            4, lambda client, _: client.post("/v1/uploads", json={**UPLOAD, "bytes": quota}), urls
        )
        upload_ids = [r.json()["id"] for r in uploads]

        def part(client: httpx.Client, index: int) -> httpx.Response:
            return client.post(
                f"/v1/uploads/{upload_ids[index % 4]}/parts",
                files={"data": ("part", secrets.token_bytes(size))},
            )

        responses = all_at_once(32, part, urls)
        added = [r for r in responses if r.status_code == 200]
        for refused in (r for r in responses if r.status_code != 200):
            error_of(refused, 400, "quota_exceeded")
        assert 0 < len(added) <= quota // size
        deadline = time.monotonic() + 10
        while True:  # a refused part's object is removed as it fails; allow a moment
            objects = moto.object_names(bucket, "shared/uploads/")
            if len(objects) == len(added) or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        assert len(objects) == len(added)
        assert cluster_usage(cluster) == Usage(files=0, bytes=size * len(added), open_uploads=4)
        # Afterwards exact: one byte more than is left is refused, exactly what is left fits.
        left = quota - size * len(added)
        headers = {"authorization": f"Bearer {KEY}"}
        with httpx.Client(base_url=urls[1], headers=headers, timeout=60) as client:
            target = upload_ids[0]
            over = client.post(
                f"/v1/uploads/{target}/parts", files={"data": ("p", bytes(left + 1))}
            )
            error_of(over, 400, "quota_exceeded")
            exact = client.post(f"/v1/uploads/{target}/parts", files={"data": ("p", bytes(left))})
            assert exact.status_code == 200, exact.text
            assert cluster_usage(cluster).bytes == quota
            for upload_id in upload_ids:
                assert client.post(f"/v1/uploads/{upload_id}/cancel").status_code == 200
        assert cluster_usage(cluster) == Usage(files=0, bytes=0, open_uploads=0)
        assert moto.object_names(bucket, "shared/uploads/") == []


# -- finding 7: a running total, and a completion body that fits every legal upload ---------


class CountingMetadataStore(FaultyMetadataStore):
    """Forwards every call, counting them by operation."""

    def __init__(self, inner: Any) -> None:
        super().__init__(inner)
        self.calls: dict[str, int] = {}

    async def _call(self, operation: str, call: Callable[[], Awaitable[_T]]) -> _T:
        self.calls[operation] = self.calls.get(operation, 0) + 1
        return await super()._call(operation, call)


async def one_byte_chunks() -> AsyncIterator[bytes]:
    yield b"x"


def test_adding_a_part_never_reads_the_other_parts(tmp_path: Path) -> None:
    """Part 2,500 took 45 s: each part re-read and re-summed every earlier one."""

    async def main() -> None:
        store = CountingMetadataStore(
            SQLMetadataStore(f"sqlite+aiosqlite:///{tmp_path / 'files.db'}")
        )
        async with FilesService(MemoryStorage(), store) as service:
            upload = await service.uploads.create("alice", bytes=300, **UPLOAD)
            for _ in range(300):
                await service.uploads.add_part("alice", upload.id, one_byte_chunks())
            assert store.calls.get("get_parts", 0) == 0
            assert store.calls["add_part"] == store.calls["get_upload"] == 300
            found = await store.get_upload("alice", upload.id)
            parts = await store.get_parts("alice", upload.id)
            assert found is not None
            assert (found.received, found.part_count) == (300, len(parts)) == (300, 300)

    anyio.run(main)


@asynccontextmanager
async def in_process(policy: Policy) -> AsyncIterator[httpx.AsyncClient]:
    service = FilesService(MemoryStorage(), MemoryMetadataStore(), policy=policy)
    app = create_app(service, auth=api_key_auth(KEYS), close_service=True)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://files.test") as http:
        yield http


def test_a_completion_can_name_2500_parts() -> None:
    """A 64 KiB completion body held about 1,900 part ids; the limit now follows the
    policy's bound on parts, so every legal upload can name all of its parts."""

    async def main() -> None:
        async with in_process(Policy()) as http:
            created = await http.post("/v1/uploads", json={**UPLOAD, "bytes": 2500}, headers=ALICE)
            upload_id = created.json()["id"]
            part_ids = []
            for _ in range(2500):
                part = await http.post(
                    f"/v1/uploads/{upload_id}/parts", files={"data": ("p", b"x")}, headers=ALICE
                )
                part_ids.append(part.json()["id"])
            body = json.dumps({"part_ids": part_ids, "md5": None}, indent=4).encode()
            assert len(body) > MAX_JSON_BODY
            done = await http.post(
                f"/v1/uploads/{upload_id}/complete",
                content=body,
                headers={**ALICE, "content-type": "application/json"},
            )
            assert done.status_code == 200, done.text
            assert done.json()["file"]["bytes"] == 2500

    anyio.run(main)


def test_the_completion_limit_fits_the_most_parts_pretty_printed() -> None:
    for policy in (Policy(), Policy(max_upload_parts=50_000), Policy(max_upload_parts=1)):
        part_ids = ["part_" + "x" * 24] * policy.max_upload_parts
        body = json.dumps({"part_ids": part_ids, "md5": "0" * 32}, indent=4)
        assert len(body.encode()) <= completion_body_limit(policy)
    assert completion_body_limit(Policy()) < 1024 * 1024  # still bounded


def test_parts_per_upload_are_bounded() -> None:
    async def main() -> None:
        async with in_process(Policy(max_upload_parts=3)) as http:
            created = await http.post("/v1/uploads", json={**UPLOAD, "bytes": 10}, headers=ALICE)
            path = f"/v1/uploads/{created.json()['id']}/parts"
            for _ in range(3):
                added = await http.post(path, files={"data": ("p", b"x")}, headers=ALICE)
                assert added.status_code == 200, added.text
            refused = await http.post(path, files={"data": ("p", b"x")}, headers=ALICE)
            error = error_of(refused, 400)
            assert error["param"] == "data"
            assert "3 parts" in error["message"]

    anyio.run(main)


# -- the upgrade of tables made before the upload accounting ---------------------------------


def test_tables_made_before_the_upload_accounting_are_upgraded(database: Database) -> None:
    """Tables of schema version 2 lack the running totals: the step to version 3 adds them
    and counts what is stored, after which the store keeps them as if it had made them."""

    async def make_v1(store: SQLMetadataStore) -> None:
        tables = store.tables
        await store.create_schema()
        async with store.engine.begin() as connection:
            for table, column in (
                (tables.usage, "open_uploads"),
                (tables.uploads, "received"),
                (tables.uploads, "part_count"),
                (tables.uploads, "reserved"),
            ):
                await connection.exec_driver_sql(f"ALTER TABLE {table.name} DROP COLUMN {column}")
        v1 = _v1_tables(tables)
        async with store.engine.begin() as connection:
            await connection.execute(update(tables.version).values(version=2))
            await connection.execute(insert(v1["usage"]).values(owner="alice", files=1, bytes=5))
            await connection.execute(
                insert(tables.files).values(**vars(make_record().replace(bytes=5)))
            )
            for upload_id, owner, state in (
                ("upload_open", "alice", "pending"),
                ("upload_done", "alice", "cancelled"),
                ("upload_bob", "bob", "completing"),
            ):
                await connection.execute(
                    insert(v1["uploads"]).values(
                        id=upload_id,
                        owner=owner,
                        filename="f",
                        purpose="assistants",
                        bytes=100,
                        mime_type="text/plain",
                        expires_after=None,
                        created_at=0,
                        expires_at=10**10,
                        state=state,
                        file_id=None,
                    )
                )
            for part_id, upload_id, owner, size in (
                ("part_1", "upload_open", "alice", 30),
                ("part_2", "upload_open", "alice", 20),
                ("part_3", "upload_done", "alice", 7),
                ("part_4", "upload_bob", "bob", 40),
            ):
                await connection.execute(
                    insert(v1["parts"]).values(
                        id=part_id,
                        upload_id=upload_id,
                        owner=owner,
                        bytes=size,
                        sha256="0" * 64,
                        storage_key=part_id,
                        created_at=0,
                    )
                )

    async def upgrade(store: SQLMetadataStore) -> None:
        async with store.engine.connect() as connection:
            await connection.run_sync(upgrade_tables, store.tables, 2)

    async def check(store: SQLMetadataStore) -> None:
        assert await store.usage("alice") == Usage(files=1, bytes=5 + 57, open_uploads=1)
        assert await store.usage("bob") == Usage(files=0, bytes=40, open_uploads=1)
        found = await store.get_upload("alice", "upload_open")
        assert found is not None
        assert (found.received, found.part_count, found.reserved) == (50, 2, 50)
        await store.remove_part("part_3")
        assert await store.move_upload(
            "alice", "upload_open", from_states=("pending",), to="cancelled"
        )
        for part_id in ("part_1", "part_2"):
            await store.remove_part(part_id)
        assert await store.usage("alice") == Usage(files=1, bytes=5, open_uploads=0)
        async with store.engine.connect() as connection:
            rows = (await connection.execute(select(store.tables.usage.c.owner))).all()
        assert sorted(row.owner for row in rows) == ["alice", "bob"]
        async with store.engine.begin() as connection:
            await connection.execute(delete(store.tables.parts))

    database.run(make_v1)
    database.run(upgrade)
    database.run(upgrade)  # idempotent: run again (cut short, or by two replicas), same counts
    database.run(check)


def _v1_tables(tables: Any) -> dict[str, Any]:
    """The usage, uploads and parts tables as version 1 made them (without the totals)."""
    from sqlalchemy import Column, MetaData, Table

    metadata = MetaData()
    dropped = {"open_uploads", "received", "part_count", "reserved"}
    found = {}
    for name, table in (
        ("usage", tables.usage),
        ("uploads", tables.uploads),
        ("parts", tables.parts),
    ):
        columns = [
            Column(column.name, column.type, primary_key=column.primary_key)
            for column in table.columns
            if column.name not in dropped
        ]
        found[name] = Table(table.name, metadata, *columns)
    return found
