"""Backends failing under the HTTP API, at every call an upload, a download or a delete makes.

Each fault is injected with `openai_files.testing.FaultyStorage` / `FaultyMetadataStore` over
the embedded default (local disk + SQLite) and the ephemeral shape (memory + memory). Whatever
fails, the client gets a 503 ``backend_unavailable`` error in OpenAI's shape (never a 500,
never a stack trace), and afterwards:

- every listed file reads back with the SHA-256 it was uploaded with, and no other file is
  listed (nothing lost, nothing half-made, nothing of another upload touched);
- once the faults are off and a sweep has run, storage holds exactly the bytes of the
  records, and every record is ``active``: no bytes without a record, no leftover ``.part``.
"""

from __future__ import annotations

import hashlib
import math
import os
import random
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
import uvicorn
from sqlalchemy import select
from starlette.applications import Starlette

from openai_files import (
    FileRecord,
    FilesService,
    LocalStorage,
    MemoryMetadataStore,
    MemoryStorage,
    MetadataStore,
    SQLMetadataStore,
    Storage,
    create_app,
)
from openai_files.errors import BackendUnavailable
from openai_files.storage.base import ComposableStorage, ListableStorage, PresignedURLs
from openai_files.testing import (
    FaultyMetadataStore,
    FaultyStorage,
    ManualClock,
    MetadataConformance,
    RandomFaults,
    StorageConformance,
)

from ..support import free_port, stored_files

pytestmark = pytest.mark.anyio

CHUNK = 64 * 1024
SIZE = 16 * CHUNK + 123  # 17 chunks on the wire
OWNER = "default"  # `open_auth`'s owner


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


async def multipart(data: bytes, *, chunk: int) -> AsyncIterator[bytes]:
    """An upload body streamed in ``chunk``-sized pieces, as an SDK streams a file."""
    yield (
        b'--b\r\nContent-Disposition: form-data; name="purpose"\r\n\r\nuser_data\r\n'
        b'--b\r\nContent-Disposition: form-data; name="file"; filename="f.bin"\r\n'
        b"Content-Type: application/octet-stream\r\n\r\n"
    )
    for offset in range(0, len(data), chunk):
        yield data[offset : offset + chunk]
    yield b"\r\n--b--\r\n"


async def all_records(store: MetadataStore) -> list[FileRecord]:
    """Every record of every owner, in any state, read beneath the store's API."""
    if isinstance(store, MemoryMetadataStore):
        return list(store._records.values())
    assert isinstance(store, SQLMetadataStore)
    files = store.tables.files
    async with store.engine.connect() as connection:
        rows = (await connection.execute(select(files))).all()
    return [FileRecord(**row._mapping) for row in rows]


def assert_unavailable(response: httpx.Response) -> None:
    """503 with OpenAI's error body for a backend that is down, and nothing internal in it."""
    assert response.status_code == 503, response.text
    if response.request.method == "HEAD":
        return
    assert response.headers["content-type"] == "application/json"
    error = response.json()["error"]
    assert error["type"] == "server_error"
    assert error["code"] == "backend_unavailable"
    assert error["param"] is None
    assert error["message"]
    assert "Traceback" not in response.text
    assert 'File "' not in response.text


@dataclass
class Rig:
    """A service over faulty backends, its app, a client, and what the client should see."""

    name: str
    clock: ManualClock
    storage: FaultyStorage
    metadata: FaultyMetadataStore
    service: FilesService
    app: Starlette
    client: httpx.AsyncClient
    root: Path | None
    files: dict[str, str] = field(default_factory=dict)
    """id -> SHA-256 of every file the client should see listed."""

    async def upload(self, data: bytes, *, chunk: int = CHUNK) -> httpx.Response:
        return await self.client.post(
            "/v1/files",
            content=multipart(data, chunk=chunk),
            headers={"content-type": "multipart/form-data; boundary=b"},
        )

    async def upload_ok(self, data: bytes) -> str:
        response = await self.upload(data)
        assert response.status_code == 200, response.text
        file_id: str = response.json()["id"]
        assert response.json()["bytes"] == len(data)
        self.files[file_id] = sha256(data)
        return file_id

    async def seed(self, count: int = 2) -> list[str]:
        """Files that exist before a fault: none of them may be touched by it."""
        return [await self.upload_ok(os.urandom(SIZE)) for _ in range(count)]

    async def keys(self) -> list[str]:
        """Every key storage holds, whatever its age."""
        inner: Any = self.storage.inner
        return sorted([key async for key in inner.iter_keys(modified_before=math.inf)])

    async def states(self) -> dict[str, str]:
        """id -> state of every record."""
        return {r.id: r.state for r in await all_records(self.metadata.inner)}

    async def check_clients_view(self) -> None:
        """Exactly the expected files are listed, each reads back whole and unchanged."""
        assert not self.metadata.down
        listed = (await self.client.get("/v1/files", params={"limit": 10_000})).json()["data"]
        assert sorted(f["id"] for f in listed) == sorted(self.files)
        for file in listed:
            response = await self.client.get(f"/v1/files/{file['id']}/content")
            assert response.status_code == 200, response.text
            assert len(response.content) == file["bytes"]
            assert sha256(response.content) == self.files[file["id"]]

    async def check_storage_matches_records(self) -> None:
        """No bytes without a record, no record without bytes, no leftover temporary file."""
        records = await all_records(self.metadata.inner)
        keys = await self.keys()
        assert sorted(r.storage_key for r in records) == keys
        assert await self.metadata.inner.existing_keys(keys) == set(keys)
        if self.root is not None:
            assert [name for name in stored_files(self.root) if ".part" in name] == []

    async def sweep(self) -> None:
        """Everything a crash or a fault left, removed: stale records, then orphaned bytes."""
        self.clock.now += 60
        await self.service.sweep(stale_after=0)
        await self.service.sweep_orphans(grace=0)

    async def check_all(self) -> None:
        """Heal every fault, check what clients see, sweep, check storage against records."""
        self.storage.heal()
        self.metadata.heal()
        await self.check_clients_view()
        await self.sweep()
        assert set((await self.states()).values()) <= {"active"}
        await self.check_storage_matches_records()
        await self.check_clients_view()


@pytest.fixture(params=["local+sqlite", "memory+memory"])
async def rig(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Rig]:
    clock = ManualClock()
    inner_storage: Storage
    inner_metadata: MetadataStore
    root = None
    if request.param == "local+sqlite":
        root = tmp_path / "blobs"
        inner_storage = LocalStorage(root)
        inner_metadata = SQLMetadataStore(f"sqlite+aiosqlite:///{tmp_path / 'files.db'}")
    else:
        inner_storage, inner_metadata = MemoryStorage(clock=clock), MemoryMetadataStore()
    storage, metadata = FaultyStorage(inner_storage), FaultyMetadataStore(inner_metadata)
    async with FilesService(storage, metadata, clock=clock) as service:
        app = create_app(service)
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://files.test") as client:
            yield Rig(request.param, clock, storage, metadata, service, app, client, root)


# -- the wrappers themselves ------------------------------------------------------------------


class TestFaultyStorageWithNoFaultIsATransparentStorage(StorageConformance):
    @pytest.fixture
    async def storage(self, tmp_path: Path) -> AsyncIterator[FaultyStorage]:
        storage = FaultyStorage(LocalStorage(tmp_path / "blobs", block_size=256 * 1024))
        yield storage
        await storage.aclose()

    async def leftovers(self, storage: Storage) -> list[str]:
        assert isinstance(storage, FaultyStorage)
        assert isinstance(storage.inner, LocalStorage)
        return stored_files(storage.inner.root)


class TestFaultyMetadataStoreWithNoFaultIsATransparentStore(MetadataConformance):
    @pytest.fixture
    async def metadata(self, sqlite_url: str) -> AsyncIterator[FaultyMetadataStore]:
        store = FaultyMetadataStore(SQLMetadataStore(sqlite_url))
        yield store
        await store.aclose()


async def chunks(*parts: bytes) -> AsyncIterator[bytes]:
    for part in parts:
        yield part


async def test_a_counted_switch_fails_that_many_calls_then_turns_itself_off() -> None:
    storage = FaultyStorage(MemoryStorage())
    await storage.put("k", chunks(b"data"))
    storage.fail_head = 2
    for _ in range(2):
        with pytest.raises(BackendUnavailable, match="injected fault in head"):
            await storage.head("k")
    assert storage.fail_head == 0
    assert await storage.head("k") == 4
    storage.fail_get = True
    for _ in range(3):
        with pytest.raises(BackendUnavailable):
            await storage.get("k")
    storage.heal()
    assert b"".join([c async for c in await storage.get("k")]) == b"data"
    assert storage.injected == {"head": 2, "get": 3}


async def test_a_put_fails_as_its_chunk_arrives_and_the_inner_storage_keeps_nothing() -> None:
    inner = MemoryStorage()
    storage = FaultyStorage(inner)
    storage.fail_put_at_chunk = 2
    with pytest.raises(BackendUnavailable, match="at chunk 2"):
        await storage.put("k", chunks(b"a", b"b", b"c"))
    assert (await storage.put("short", chunks(b"a"))).size == 1  # no second chunk: no fault
    storage.fail_put_at_chunk, storage.fail_put = None, 1
    with pytest.raises(BackendUnavailable, match="after the last chunk"):
        await storage.put("k", chunks(b"a", b"b"))
    assert inner.keys() == ["short"]


async def test_a_lost_reply_lets_the_call_take_effect_before_it_fails() -> None:
    metadata = FaultyMetadataStore(MemoryMetadataStore())
    record = FileRecord(
        id="file-1",
        owner=OWNER,
        purpose="user_data",
        filename="f.bin",
        bytes=0,
        created_us=1,
        expires_at=None,
        status="uploaded",
        status_details=None,
        storage_key="aa/bb",
        sha256=None,
        media_type=None,
        state="pending",
    )
    metadata.fail_insert, metadata.lost_replies = 1, {"insert"}
    with pytest.raises(BackendUnavailable):
        await metadata.insert(record)
    assert await metadata.existing_keys(["aa/bb"]) == {"aa/bb"}
    metadata.down = True
    with pytest.raises(BackendUnavailable):
        await metadata.usage(OWNER)
    metadata.heal()
    assert (await metadata.usage(OWNER)).files == 1


async def test_random_faults_replay_with_the_same_seed_and_only_strike_named_operations() -> None:
    def run(seed: int) -> list[bool]:
        faults = RandomFaults(0.5, random.Random(seed), operations={"get"})
        return [faults.strikes("get") for _ in range(50)] + [faults.strikes("put")]

    assert run(3) == run(3)
    assert run(3) != run(4)
    assert run(3)[-1] is False
    assert 10 < sum(run(3)) < 40


def test_the_wrapper_has_the_capabilities_of_the_storage_it_wraps(tmp_path: Path) -> None:
    local = FaultyStorage(LocalStorage(tmp_path))
    assert isinstance(local, ListableStorage)
    assert isinstance(local, ComposableStorage)
    assert not isinstance(local, PresignedURLs)
    assert local.path_for("aa/bb") == tmp_path.resolve() / "aa/bb"
    with pytest.raises(AttributeError):
        local.no_such_thing  # noqa: B018


# -- storage faults ----------------------------------------------------------------------------


@pytest.mark.parametrize("chunk", [1, 7])
async def test_a_put_failing_as_a_chunk_arrives_answers_503_and_stores_nothing(
    rig: Rig, chunk: int
) -> None:
    await rig.seed()
    keys_before = await rig.keys()
    rig.storage.fail_put_at_chunk = chunk
    assert_unavailable(await rig.upload(os.urandom(SIZE)))
    assert rig.storage.injected == {"put": 1}
    # Atomic put, and the upload removed its record: nothing to wait for a sweep.
    assert await rig.keys() == keys_before
    assert set((await rig.states()).values()) == {"active"}
    await rig.check_all()


async def test_a_put_failing_after_its_last_chunk_answers_503_and_stores_nothing(
    rig: Rig,
) -> None:
    await rig.seed()
    keys_before = await rig.keys()
    rig.storage.fail_put = 1
    assert_unavailable(await rig.upload(os.urandom(SIZE)))
    assert rig.storage.injected == {"put": 1}
    assert await rig.keys() == keys_before
    await rig.upload_ok(b"the next upload succeeds")
    await rig.check_all()


async def test_a_put_whose_reply_is_lost_answers_503_and_its_bytes_are_removed(
    rig: Rig,
) -> None:
    await rig.seed()
    keys_before = await rig.keys()
    rig.storage.fail_put, rig.storage.lost_replies = 1, {"put"}
    assert_unavailable(await rig.upload(os.urandom(SIZE)))
    assert await rig.keys() == keys_before
    await rig.check_all()


async def test_a_download_whose_storage_fails_answers_503_and_the_file_stays_intact(
    rig: Rig,
) -> None:
    first, _ = await rig.seed()
    rig.storage.fail_get = True
    assert_unavailable(await rig.client.get(f"/v1/files/{first}/content"))
    # What needs only the records still works.
    assert (await rig.client.get(f"/v1/files/{first}")).status_code == 200
    assert (await rig.client.head(f"/v1/files/{first}/content")).status_code == 200
    assert len((await rig.client.get("/v1/files")).json()["data"]) == 2
    rig.storage.fail_get = 1  # the next read fails, the one after succeeds
    assert_unavailable(await rig.client.get(f"/v1/files/{first}/content"))
    response = await rig.client.get(f"/v1/files/{first}/content")
    assert sha256(response.content) == rig.files[first]
    assert rig.storage.injected == {"get": 2}
    await rig.check_all()


async def test_a_failing_storage_head_changes_nothing_for_clients(rig: Rig) -> None:
    # The service never needs `Storage.head`: sizes come from the records.
    rig.storage.fail_head = True
    first, second = await rig.seed()
    assert (await rig.client.head(f"/v1/files/{first}/content")).status_code == 200
    response = await rig.client.get(f"/v1/files/{first}/content", headers={"range": "bytes=0-9"})
    assert response.status_code == 206
    assert (await rig.client.delete(f"/v1/files/{second}")).status_code == 200
    del rig.files[second]
    assert rig.storage.injected == {}
    await rig.check_all()


async def test_a_delete_whose_blob_removal_fails_is_a_delete_for_clients_and_a_sweep_ends_it(
    rig: Rig,
) -> None:
    first, second = await rig.seed()
    key = next(r.storage_key for r in await all_records(rig.metadata.inner) if r.id == first)
    rig.storage.fail_delete = True
    response = await rig.client.delete(f"/v1/files/{first}")
    assert response.status_code == 200
    assert response.json() == {"id": first, "object": "file", "deleted": True}
    del rig.files[first]
    assert (await rig.client.get(f"/v1/files/{first}")).status_code == 404
    assert (await rig.client.get(f"/v1/files/{first}/content")).status_code == 404
    await rig.check_clients_view()
    assert (await rig.states())[first] == "deleting"
    assert key in await rig.keys()

    # A sweep while storage still fails keeps the reminder; one after it recovers finishes.
    rig.clock.now += 60
    report = await rig.service.sweep(stale_after=0)
    assert (report.stale, report.failed) == (1, 1)
    assert (await rig.states())[first] == "deleting"
    rig.storage.heal()
    await rig.sweep()
    assert first not in await rig.states()
    assert key not in await rig.keys()
    assert second in rig.files
    await rig.check_all()


async def test_a_storage_outage_refuses_uploads_and_downloads_and_deletes_finish_later(
    rig: Rig,
) -> None:
    first, second = await rig.seed()
    rig.storage.down = True
    assert_unavailable(await rig.upload(os.urandom(SIZE)))
    assert_unavailable(await rig.client.get(f"/v1/files/{first}/content"))
    assert (await rig.client.get(f"/v1/files/{first}")).status_code == 200
    assert (await rig.client.delete(f"/v1/files/{second}")).status_code == 200
    del rig.files[second]
    await rig.check_all()


# -- metadata faults ---------------------------------------------------------------------------


async def test_an_insert_failure_answers_503_and_stores_nothing(rig: Rig) -> None:
    await rig.seed()
    keys_before = await rig.keys()
    rig.metadata.fail_insert = 1
    assert_unavailable(await rig.upload(os.urandom(SIZE)))
    assert rig.metadata.injected == {"insert": 1}
    assert await rig.keys() == keys_before
    await rig.check_all()


async def test_an_insert_whose_reply_is_lost_leaves_only_a_record_the_sweep_removes(
    rig: Rig,
) -> None:
    await rig.seed()
    rig.metadata.fail_insert, rig.metadata.lost_replies = 1, {"insert"}
    assert_unavailable(await rig.upload(os.urandom(SIZE)))
    assert sorted((await rig.states()).values()) == ["active", "active", "pending"]
    await rig.check_all()


async def test_a_commit_failure_after_every_byte_was_written_answers_503_and_lists_nothing(
    rig: Rig,
) -> None:
    await rig.seed()
    keys_before = await rig.keys()
    rig.metadata.fail_commit = 1
    assert_unavailable(await rig.upload(os.urandom(SIZE)))
    assert rig.metadata.injected == {"commit": 1}
    await rig.check_clients_view()
    assert await rig.keys() == keys_before
    await rig.check_all()


async def test_a_commit_failure_whose_clean_up_fails_too_leaves_what_a_sweep_removes(
    rig: Rig,
) -> None:
    await rig.seed()
    keys_before = await rig.keys()
    rig.metadata.fail_commit, rig.metadata.fail_remove = 1, 1
    assert_unavailable(await rig.upload(os.urandom(SIZE)))
    assert rig.metadata.injected == {"commit": 1, "remove": 1}
    await rig.check_clients_view()
    assert sorted((await rig.states()).values()) == ["active", "active", "pending"]
    assert await rig.keys() == keys_before  # the bytes went first
    await rig.check_all()


async def test_a_commit_whose_reply_is_lost_answers_503_and_the_file_is_not_kept(
    rig: Rig,
) -> None:
    await rig.seed()
    keys_before = await rig.keys()
    rig.metadata.fail_commit, rig.metadata.lost_replies = 1, {"commit"}
    assert_unavailable(await rig.upload(os.urandom(SIZE)))
    await rig.check_clients_view()
    assert await rig.keys() == keys_before
    await rig.check_all()


async def test_a_commit_whose_reply_is_lost_as_the_database_goes_down_lists_no_file_without_bytes(
    rig: Rig,
) -> None:
    # The commit took effect, only its reply was lost; the upload's clean-up then cannot reach
    # the database either. Whatever the client may see, a listed file must read back.
    await rig.seed()
    rig.metadata.fail_commit, rig.metadata.lost_replies = 1, {"commit"}
    rig.metadata.fail_remove = 1
    assert_unavailable(await rig.upload(os.urandom(SIZE)))
    rig.metadata.heal()
    listed = (await rig.client.get("/v1/files")).json()["data"]
    for file in listed:
        response = await rig.client.get(f"/v1/files/{file['id']}/content")
        assert response.status_code == 200, f"{file['id']} is listed but cannot be read"
    await rig.check_all()


async def test_a_retry_with_the_same_idempotency_key_after_a_lost_commit_reply_stores_the_file(
    rig: Rig,
) -> None:
    # The first attempt's commit landed and was then undone: the key names no file any more,
    # so the client's retry must upload, not be told the file it never got does not exist.
    await rig.seed()
    data = os.urandom(SIZE)
    headers = {"content-type": "multipart/form-data; boundary=b", "idempotency-key": "upload-1"}
    rig.metadata.fail_commit, rig.metadata.lost_replies = 1, {"commit"}
    response = await rig.client.post(
        "/v1/files", content=multipart(data, chunk=CHUNK), headers=headers
    )
    assert_unavailable(response)
    rig.metadata.heal()
    retry = await rig.client.post(
        "/v1/files", content=multipart(data, chunk=CHUNK), headers=headers
    )
    assert retry.status_code == 200, retry.text
    rig.files[retry.json()["id"]] = sha256(data)
    await rig.check_all()


async def test_a_begin_delete_failure_answers_503_and_leaves_the_file_intact(rig: Rig) -> None:
    first, _ = await rig.seed()
    rig.metadata.fail_begin_delete = 1
    assert_unavailable(await rig.client.delete(f"/v1/files/{first}"))
    assert rig.metadata.injected == {"begin_delete": 1}
    assert rig.storage.injected == {}
    await rig.check_clients_view()
    assert (await rig.client.delete(f"/v1/files/{first}")).status_code == 200
    del rig.files[first]
    await rig.check_all()


async def test_a_record_removal_failure_after_the_bytes_went_still_deletes_and_a_sweep_ends_it(
    rig: Rig,
) -> None:
    # As when the bytes cannot be removed: the file is gone for clients, so the delete
    # succeeds, and the `deleting` record is the sweeper's reminder.
    first, _ = await rig.seed()
    rig.metadata.fail_remove = 1
    assert (await rig.client.delete(f"/v1/files/{first}")).json()["deleted"] is True
    # The file is gone for clients already; its record waits for the sweeper.
    del rig.files[first]
    assert (await rig.client.get(f"/v1/files/{first}")).status_code == 404
    await rig.check_clients_view()
    assert (await rig.states())[first] == "deleting"
    await rig.check_all()
    assert first not in await rig.states()


@pytest.mark.parametrize("operation", ["get", "list"])
async def test_a_failing_metadata_read_answers_503_and_changes_nothing(
    rig: Rig, operation: str
) -> None:
    first, _ = await rig.seed()
    setattr(rig.metadata, f"fail_{operation}", True)
    if operation == "get":
        assert_unavailable(await rig.client.get(f"/v1/files/{first}"))
        assert_unavailable(await rig.client.get(f"/v1/files/{first}/content"))
        assert_unavailable(await rig.client.head(f"/v1/files/{first}/content"))
    else:
        assert_unavailable(await rig.client.get("/v1/files"))
        assert_unavailable(await rig.client.get("/files", params={"purpose": "user_data"}))
    await rig.check_all()


async def test_a_metadata_outage_answers_503_on_every_endpoint(rig: Rig) -> None:
    first, _ = await rig.seed()
    rig.metadata.down = True
    client = rig.client
    for prefix in ("", "/v1"):
        assert_unavailable(await client.get(f"{prefix}/files"))
        assert_unavailable(await client.get(f"{prefix}/files/{first}"))
        assert_unavailable(await client.get(f"{prefix}/files/{first}/content"))
        assert_unavailable(await client.head(f"{prefix}/files/{first}/content"))
        assert_unavailable(await client.delete(f"{prefix}/files/{first}"))
        assert_unavailable(
            await client.post(
                f"{prefix}/files",
                content=multipart(os.urandom(SIZE), chunk=CHUNK),
                headers={"content-type": "multipart/form-data; boundary=b"},
            )
        )
        assert_unavailable(
            await client.post(f"{prefix}/files", headers={"idempotency-key": "k1"}, files={})
        )
        upload = {
            "filename": "a.bin",
            "purpose": "user_data",
            "bytes": 3,
            "mime_type": "text/plain",
        }
        assert_unavailable(await client.post(f"{prefix}/uploads", json=upload))
    assert rig.storage.injected == {}
    await rig.check_all()


# -- a download broken midway, over a real server ------------------------------------------------


@asynccontextmanager
async def served(app: Starlette) -> AsyncIterator[str]:
    """uvicorn serving ``app`` on this event loop, on a free loopback port."""
    port = free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="critical", lifespan="off")
    server = uvicorn.Server(config)
    async with anyio.create_task_group() as tasks:
        tasks.start_soon(server.serve)
        for _ in range(1000):
            if server.started:
                break
            await anyio.sleep(0.01)
        else:
            raise RuntimeError("the test server did not start")
        try:
            yield f"http://127.0.0.1:{port}"
        finally:
            server.should_exit = True


async def test_a_download_broken_midway_is_cut_off_never_passed_off_as_complete(
    rig: Rig,
) -> None:
    data = os.urandom(3 * 1024 * 1024 + 5)  # several storage chunks, local or memory
    file_id = await rig.upload_ok(data)
    rig.storage.fail_read_at_chunk = 2
    async with served(rig.app) as url, httpx.AsyncClient() as client:
        with pytest.raises(httpx.RemoteProtocolError):
            await client.get(f"{url}/v1/files/{file_id}/content")
        rig.storage.heal()
        response = await client.get(f"{url}/v1/files/{file_id}/content")
        assert sha256(response.content) == sha256(data)
    assert rig.storage.injected == {"get": 1}
    await rig.check_all()


# -- random faults -------------------------------------------------------------------------------


SOAK_OPERATIONS = 300


async def test_random_faults_in_both_backends_never_lose_or_corrupt_a_file(rig: Rig) -> None:
    chance = random.Random(20240601)
    faults = RandomFaults(0.12, random.Random(7))
    rig.storage.random_faults = rig.metadata.random_faults = faults
    # Calls whose effect may land before the failure is reported (all but a lost commit,
    # which `test_a_commit_whose_reply_is_lost_as_the_database_goes_down...` covers).
    rig.storage.lost_replies = {"put", "delete"}
    rig.metadata.lost_replies = {"insert", "begin_delete", "remove"}
    maybe: dict[str, str] = {}  # files whose delete failed: gone or intact, never broken
    statuses: list[int] = []
    for _ in range(SOAK_OPERATIONS):
        action = chance.choice(["create"] * 3 + ["list"] + ["read"] * 2 + ["delete"])
        known = sorted(rig.files)
        if action == "create":
            data = os.urandom(chance.randrange(0, 4 * CHUNK))
            response = await rig.upload(data, chunk=chance.choice([4096, CHUNK]))
            if response.status_code == 200:
                rig.files[response.json()["id"]] = sha256(data)
        elif action == "list":
            response = await rig.client.get("/v1/files", params={"limit": 10_000})
            if response.status_code == 200:
                listed = {f["id"] for f in response.json()["data"]}
                assert set(rig.files) <= listed <= set(rig.files) | set(maybe)
        elif action == "read" and known:
            file_id = chance.choice(known)
            response = await rig.client.get(f"/v1/files/{file_id}/content")
            if response.status_code == 200:
                assert sha256(response.content) == rig.files[file_id]
        elif action == "delete" and known:
            file_id = chance.choice(known)
            response = await rig.client.delete(f"/v1/files/{file_id}")
            maybe[file_id] = rig.files.pop(file_id)
            if response.status_code == 200:
                del maybe[file_id]
        else:
            continue
        statuses.append(response.status_code)
        if response.status_code != 200:
            assert_unavailable(response)
    injected = rig.storage.injected + rig.metadata.injected
    assert sum(injected.values()) >= 10, injected
    assert statuses.count(200) >= SOAK_OPERATIONS // 3

    rig.storage.heal()
    rig.metadata.heal()
    listed = (await rig.client.get("/v1/files", params={"limit": 10_000})).json()["data"]
    for file in listed:
        if file["id"] in maybe:  # a delete that failed either happened or did not, wholly
            rig.files[file["id"]] = maybe.pop(file["id"])
    await rig.check_all()
