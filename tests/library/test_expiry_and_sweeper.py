"""Expiry and the sweeper, with a controllable clock, over every storage x metadata pair.

Storage: memory, local disk, S3 (moto). Metadata: memory, SQLite, PostgreSQL. An expired file
is gone for clients at the second it expires, before any sweep; a sweep then removes its bytes
and its record. Held files, crashed uploads, failed blob removals, orphaned bytes, concurrent
sweepers, event hooks and the app's own sweeper are covered too.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterable, AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from sqlalchemy import select

from openai_files import (
    BackendUnavailable,
    BlobNotFound,
    Conflict,
    FileNotFound,
    FilesService,
    LocalStorage,
    MemoryMetadataStore,
    MemoryStorage,
    MetadataStore,
    Policy,
    SQLMetadataStore,
    Storage,
    StoredBlob,
    api_key_auth,
    create_app,
)
from openai_files._pending_upload import RECORD_AFTER
from openai_files.errors import QuotaExceeded
from openai_files.events import FileEvent
from openai_files.ids import new_storage_key
from openai_files.metadata.base import DEFAULT_TABLE_PREFIX, FileRecord, Quota, Usage
from openai_files.storage.s3 import S3Storage
from openai_files.sweeper import SWEEP_DELETES, SweepReport
from openai_files.testing import FaultyMetadataStore, ManualClock

from ..databases import POSTGRES_URL, drop_tables, require_database, unique_prefix
from ..s3_servers import S3Server
from ..support import serve, stored_files

pytestmark = pytest.mark.anyio

STORAGES = ("memory", "local", "s3")
METADATA = ("memory", "sqlite", "postgresql")
PAIRS = [f"{storage}+{metadata}" for storage in STORAGES for metadata in METADATA]
REPRESENTATIVE = ["memory+memory", "local+sqlite", "s3+postgresql"]
OWNER = "alice"
HOUR = 3600
KEY = "sk-sweeper"
AUTH = {"authorization": f"Bearer {KEY}"}


@dataclass
class Pair:
    """Which backends a test runs on, and the S3 server when one of them is S3."""

    storage: str
    metadata: str
    s3: S3Server | None


@pytest.fixture(params=PAIRS)
def pair(request: pytest.FixtureRequest) -> Pair:
    storage, metadata = request.param.split("+")
    if metadata == "postgresql":
        require_database("postgresql")
    s3 = request.getfixturevalue("moto") if storage == "s3" else None
    return Pair(storage, metadata, s3)


@dataclass
class Backends:
    """One storage and one metadata store under a controllable clock, plus ways to look
    beneath the service at what they hold."""

    pair: Pair
    clock: ManualClock
    storage: Storage
    metadata: MetadataStore
    root: Path | None = None
    bucket: str | None = None
    metadata_url: str | None = None
    table_prefix: str | None = None
    extra_stores: list[SQLMetadataStore] = field(default_factory=list)

    def service(
        self,
        *,
        storage: Storage | None = None,
        metadata: MetadataStore | None = None,
        **options: Any,
    ) -> FilesService:
        return FilesService(
            storage or self.storage, metadata or self.metadata, clock=self.clock, **options
        )

    def another_store(self) -> SQLMetadataStore:
        """A second store on the same database and tables, as another replica would open."""
        assert self.metadata_url is not None
        assert self.table_prefix is not None
        store = SQLMetadataStore(self.metadata_url, table_prefix=self.table_prefix)
        self.extra_stores.append(store)
        return store

    async def key_of(self, file_id: str) -> str:
        record = await self.metadata.get(OWNER, file_id, now=int(self.clock()))
        assert record is not None, f"{file_id} is not visible"
        return record.storage_key

    async def stored(self, key: str) -> bool:
        """Whether storage holds bytes under ``key``, by `Storage.head` and, beneath it, by
        the memory dict, the directory or the bucket's listing (which must agree)."""
        try:
            await self.storage.head(key)
        except BlobNotFound:
            found = False
        else:
            found = True
        assert (key in self.leftovers()) == found
        return found

    def leftovers(self) -> list[str]:
        """Everything storage holds: keys, temporary files, incomplete S3 uploads."""
        if isinstance(self.storage, MemoryStorage):
            return self.storage.keys()
        if isinstance(self.storage, LocalStorage):
            assert self.root is not None
            return stored_files(self.root)
        assert isinstance(self.storage, S3Storage)
        assert self.pair.s3 is not None
        return self.pair.s3.leftovers(self.storage)

    async def records(self) -> list[tuple[str, str, str]]:
        """(id, state, storage key) of every record of every owner, in any state."""
        if isinstance(self.metadata, MemoryMetadataStore):
            return sorted((r.id, r.state, r.storage_key) for r in self.metadata._records.values())
        assert isinstance(self.metadata, SQLMetadataStore)
        files = self.metadata.tables.files
        async with self.metadata.engine.connect() as connection:
            query = select(files.c.id, files.c.state, files.c.storage_key)
            rows = (await connection.execute(query)).all()
        return sorted((row.id, row.state, row.storage_key) for row in rows)

    async def assert_gone(self, key: str) -> None:
        """No bytes and no record, in any state, under ``key``."""
        with pytest.raises(BlobNotFound):
            await self.storage.head(key)
        assert key not in self.leftovers()
        assert await self.metadata.existing_keys([key]) == set()
        assert [r for r in await self.records() if r[2] == key] == []

    async def age(self, keys: list[str], seconds: float) -> None:
        """Make the objects under ``keys`` older by ``seconds`` than the clock's now (memory:
        by moving the clock on, which ages every object; local: by setting the mtime)."""
        if isinstance(self.storage, MemoryStorage):
            self.clock.advance(seconds)
            return
        assert isinstance(self.storage, LocalStorage)
        then = self.clock() - seconds
        for key in keys:
            os.utime(self.storage.path_for(key), (then, then))


@pytest.fixture
async def env(pair: Pair, tmp_path: Path) -> AsyncIterator[Backends]:
    clock = ManualClock()
    storage: Storage
    root = bucket = None
    if pair.storage == "memory":
        storage = MemoryStorage(clock=clock)
    elif pair.storage == "local":
        root = tmp_path / "blobs"
        storage = LocalStorage(root)
    else:
        assert pair.s3 is not None
        bucket = pair.s3.create_bucket()
        storage = pair.s3.storage(bucket, prefix="files/")
    metadata: MetadataStore
    url = prefix = None
    if pair.metadata == "memory":
        metadata = MemoryMetadataStore()
    else:
        if pair.metadata == "postgresql":
            url, prefix = POSTGRES_URL, unique_prefix()
        else:
            url, prefix = f"sqlite+aiosqlite:///{tmp_path / 'files.db'}", DEFAULT_TABLE_PREFIX
        metadata = SQLMetadataStore(url, table_prefix=prefix)
    backends = Backends(pair, clock, storage, metadata, root, bucket, url, prefix)
    try:
        yield backends
    finally:
        for store in backends.extra_stores:
            await store.aclose()
        await metadata.aclose()
        await storage.aclose()
        if pair.metadata == "postgresql":
            assert url is not None
            assert prefix is not None
            await drop_tables(url, prefix)
        if bucket is not None:
            assert pair.s3 is not None
            pair.s3.remove_bucket(bucket)


async def chunks(data: bytes, size: int = 64 * 1024) -> AsyncIterator[bytes]:
    for offset in range(0, len(data), size):
        yield data[offset : offset + size]


async def read_all(service: FilesService, file_id: str) -> bytes:
    content = await service.content(OWNER, file_id)
    return b"".join([chunk async for chunk in content.chunks])


async def listed(service: FilesService) -> list[str]:
    return [f.id for f in (await service.list(OWNER)).data]


async def create(service: FilesService, data: bytes, **options: Any) -> str:
    created = await service.create(
        OWNER, file=data, filename="f.bin", purpose="user_data", **options
    )
    return created.id


class FlakyDeletes:
    """A storage whose first ``failures`` deletes fail as an unreachable backend would."""

    def __init__(self, inner: Storage, failures: int = 1) -> None:
        self.inner = inner
        self.failures = failures

    async def put(self, key: str, chunks: AsyncIterable[bytes]) -> StoredBlob:
        return await self.inner.put(key, chunks)

    async def get(
        self, key: str, *, start: int = 0, end: int | None = None
    ) -> AsyncIterator[bytes]:
        return await self.inner.get(key, start=start, end=end)

    async def head(self, key: str) -> int:
        return await self.inner.head(key)

    async def delete(self, key: str) -> None:
        if self.failures:
            self.failures -= 1
            raise BackendUnavailable("Storage is unavailable: the test made this delete fail.")
        await self.inner.delete(key)

    async def aclose(self) -> None:
        await self.inner.aclose()


# -- expiry --------------------------------------------------------------------------------


async def test_an_expired_file_is_404_at_expires_at_before_any_sweep_and_the_sweep_removes_it(
    env: Backends,
) -> None:
    service = env.service()
    created = await service.create(
        OWNER, file=b"short-lived", filename="e.txt", purpose="user_data", expires_after=HOUR
    )
    assert created.expires_at == created.created_at + HOUR
    kept = await create(service, b"forever")
    key = await env.key_of(created.id)

    env.clock.now = created.expires_at - 1
    assert (await service.retrieve(OWNER, created.id)).id == created.id
    assert await read_all(service, created.id) == b"short-lived"
    assert sorted(await listed(service)) == sorted([created.id, kept])

    env.clock.now = created.expires_at
    with pytest.raises(FileNotFound):
        await service.retrieve(OWNER, created.id)
    with pytest.raises(FileNotFound):
        await service.content(OWNER, created.id)
    with pytest.raises(FileNotFound):
        await service.delete(OWNER, created.id)
    assert await listed(service) == [kept]
    # Nothing has swept yet: the bytes and the record are still there, merely invisible.
    assert await env.stored(key)
    assert [state for _, state, k in await env.records() if k == key] == ["active"]

    report = await service.sweep()
    assert report == SweepReport(expired=1, removed=1)
    await env.assert_gone(key)
    assert await read_all(service, kept) == b"forever"
    assert await service.metadata.usage(OWNER) == Usage(files=1, bytes=len(b"forever"))
    assert await service.sweep() == SweepReport()


async def test_a_held_file_outlives_its_expiry_until_released_and_is_swept_after(
    env: Backends,
) -> None:
    service = env.service()
    file_id = await create(service, b"held", expires_after=HOUR)
    key = await env.key_of(file_id)
    expires_at = (await service.retrieve(OWNER, file_id)).expires_at
    assert expires_at is not None
    await service.hold(OWNER, file_id, "batch_1")

    env.clock.now = expires_at + 600
    assert (await service.retrieve(OWNER, file_id)).id == file_id
    assert await read_all(service, file_id) == b"held"
    assert await listed(service) == [file_id]
    with pytest.raises(Conflict):
        await service.delete(OWNER, file_id)
    assert await service.sweep() == SweepReport()
    assert await env.stored(key)

    assert await service.release(OWNER, file_id, "batch_1") is True
    with pytest.raises(FileNotFound):
        await service.retrieve(OWNER, file_id)
    assert await listed(service) == []
    assert await service.sweep() == SweepReport(expired=1, removed=1)
    await env.assert_gone(key)


async def test_an_expired_file_cannot_be_held(env: Backends) -> None:
    service = env.service()
    file_id = await create(service, b"late", expires_after=HOUR)
    env.clock.advance(HOUR)
    with pytest.raises(FileNotFound):
        await service.hold(OWNER, file_id, "batch_1")
    assert await service.sweep() == SweepReport(expired=1, removed=1)


# -- crashed uploads and failed removals ----------------------------------------------------


async def test_a_crashed_upload_is_invisible_and_swept_with_its_bytes_once_stale(
    env: Backends,
) -> None:
    service = env.service(policy=Policy(quota=Quota(max_files=1, max_bytes=64 * 1024 * 1024)))
    started = env.clock()
    upload = await service.begin_upload(OWNER, filename="crash.bin", purpose="user_data")
    # Past RECORD_AFTER, an upload streams with a pending record (a smaller one is recorded
    # only once stored: tests/library/test_one_step_create.py).
    await upload.write(chunks(os.urandom(RECORD_AFTER + 200_000)))
    # The process "dies" here: neither finish nor abort, the context is never left.
    key = upload.record.storage_key
    assert await env.stored(key)
    assert [(state, k) for _, state, k in await env.records()] == [("pending", key)]
    with pytest.raises(FileNotFound):
        await service.retrieve(OWNER, upload.file_id)
    assert await listed(service) == []
    usage = await service.metadata.usage(OWNER)
    assert usage.files == 1
    assert usage.bytes >= RECORD_AFTER + 200_000
    with pytest.raises(QuotaExceeded):  # the dead upload still counts against the quota
        await create(service, b"blocked")

    env.clock.now = started + HOUR - 1
    assert await service.sweep(stale_after=HOUR) == SweepReport()
    assert await env.stored(key)

    env.clock.now = started + HOUR + 1
    assert await service.sweep(stale_after=HOUR) == SweepReport(stale=1, removed=1)
    await env.assert_gone(key)
    assert await service.metadata.usage(OWNER) == Usage(files=0, bytes=0)
    assert await read_all(service, await create(service, b"fits again")) == b"fits again"


async def test_a_failed_blob_removal_on_delete_is_retried_by_a_later_sweep(env: Backends) -> None:
    service = env.service(storage=FlakyDeletes(env.storage))
    file_id = await create(service, b"stubborn")
    key = await env.key_of(file_id)
    await service.delete(OWNER, file_id)
    with pytest.raises(FileNotFound):
        await service.retrieve(OWNER, file_id)
    assert await listed(service) == []
    assert [(i, state) for i, state, _ in await env.records()] == [(file_id, "deleting")]
    assert await env.stored(key)
    assert await service.metadata.usage(OWNER) == Usage(files=0, bytes=0)

    assert await service.sweep(stale_after=HOUR) == SweepReport()  # not stale yet
    assert await env.stored(key)
    env.clock.advance(HOUR + 1)
    assert await service.sweep(stale_after=HOUR) == SweepReport(stale=1, removed=1)
    await env.assert_gone(key)


async def test_a_failed_blob_removal_during_a_sweep_is_retried_once_stale(env: Backends) -> None:
    service = env.service(storage=FlakyDeletes(env.storage))
    file_id = await create(service, b"expiring", expires_after=HOUR)
    key = await env.key_of(file_id)
    env.clock.advance(HOUR)

    assert await service.sweep(stale_after=HOUR) == SweepReport(expired=1, failed=1)
    assert [(i, state) for i, state, _ in await env.records()] == [(file_id, "deleting")]
    assert await env.stored(key)
    with pytest.raises(FileNotFound):
        await service.retrieve(OWNER, file_id)
    assert await service.sweep(stale_after=HOUR) == SweepReport()

    env.clock.advance(HOUR + 1)
    assert await service.sweep(stale_after=HOUR) == SweepReport(stale=1, removed=1)
    await env.assert_gone(key)


# -- orphans ---------------------------------------------------------------------------------


async def test_orphaned_bytes_older_than_the_grace_are_removed_and_live_bytes_kept(
    env: Backends,
) -> None:
    service = env.service()
    live = await create(service, b"live bytes")
    live_key = await env.key_of(live)
    orphan = new_storage_key()
    await env.storage.put(orphan, chunks(b"nobody's"))
    grace = HOUR

    assert await service.sweep_orphans(grace=grace) == 0  # everything is younger than that
    assert await env.stored(orphan)

    if env.pair.storage == "s3":
        # S3 dates objects by the server's clock: a negative grace makes them all old.
        young = None
        removed = await service.sweep_orphans(grace=-60)
    else:
        await env.age([live_key, orphan], grace + 60)
        young = new_storage_key()
        await env.storage.put(young, chunks(b"just written"))
        removed = await service.sweep_orphans(grace=grace)
    assert removed == 1
    assert not await env.stored(orphan)
    assert await env.stored(live_key)
    assert await read_all(service, live) == b"live bytes"
    if young is not None:
        assert await env.stored(young)


@pytest.mark.parametrize(
    "pair", ["local+memory", "local+sqlite", "local+postgresql"], indirect=True
)
async def test_temporary_files_of_dead_local_puts_older_than_the_grace_are_removed(
    env: Backends,
) -> None:
    service = env.service()
    live = await create(service, b"live")
    live_path = Path(env.storage.path_for(await env.key_of(live)))  # type: ignore[attr-defined]
    old_part = live_path.with_name(f".{live_path.name}.0badf00d.part")
    young_part = live_path.with_name(f".{live_path.name}.5eedf00d.part")
    old_part.write_bytes(b"half an upload")
    young_part.write_bytes(b"an upload in progress")
    then = env.clock() - HOUR - 60
    os.utime(old_part, (then, then))
    os.utime(live_path, (then, then))

    assert await service.sweep_orphans(grace=HOUR) == 1
    assert not old_part.exists()
    assert young_part.exists()
    assert await read_all(service, live) == b"live"


# -- deletes at once -------------------------------------------------------------------------


class GatedDeletes(FlakyDeletes):
    """A storage whose deletes wait until `SWEEP_DELETES` of them are in flight at once, and
    which counts the most it saw in flight."""

    def __init__(self, inner: Storage) -> None:
        super().__init__(inner, failures=0)
        self.in_flight = self.most = 0
        self.full = anyio.Event()

    async def delete(self, key: str) -> None:
        self.in_flight += 1
        self.most = max(self.most, self.in_flight)
        if self.in_flight == SWEEP_DELETES:
            self.full.set()
        try:
            await self.full.wait()
            await self.inner.delete(key)
        finally:
            self.in_flight -= 1


@pytest.mark.parametrize("pair", REPRESENTATIVE, indirect=True)
async def test_a_sweep_removes_the_bytes_of_up_to_sweep_deletes_files_at_once(
    env: Backends,
) -> None:
    storage = GatedDeletes(env.storage)
    service = env.service(storage=storage)
    ids = await create_expiring(service, 2 * SWEEP_DELETES + 3)
    keys = {key for _, _, key in await env.records()}
    env.clock.advance(HOUR)
    with anyio.fail_after(10):  # fewer deletes at once would wait at the gate for ever
        report = await service.sweep()
    assert report == SweepReport(expired=len(ids), removed=len(ids))
    assert storage.most == SWEEP_DELETES
    assert await env.records() == []
    assert [key for key in keys if key in env.leftovers()] == []


class CountedInlineDeletes(MemoryMetadataStore):
    """A metadata store that keeps small files' bytes and counts the most of their deletes in
    flight at once (each takes 10 ms)."""

    def __init__(self) -> None:
        super().__init__()
        self.in_flight = self.most = 0

    async def delete_inline(self, storage_key: str) -> None:
        self.in_flight += 1
        self.most = max(self.most, self.in_flight)
        try:
            await anyio.sleep(0.01)
            await super().delete_inline(storage_key)
        finally:
            self.in_flight -= 1


async def test_a_sweep_removes_the_bytes_a_metadata_store_keeps_one_file_at_a_time() -> None:
    clock, store = ManualClock(), CountedInlineDeletes()
    service = FilesService(MemoryStorage(), store, clock=clock, inline_max=1024)
    ids = await create_expiring(service, 5)
    clock.advance(HOUR)
    assert await service.sweep() == SweepReport(expired=len(ids), removed=len(ids))
    assert store.most == 1
    assert await store.usage(OWNER) == Usage(files=0, bytes=0)


# -- concurrent sweepers --------------------------------------------------------------------


async def create_expiring(service: FilesService, count: int) -> list[str]:
    ids: list[str] = []
    limiter = anyio.CapacityLimiter(10)

    async def one(index: int) -> None:
        async with limiter:
            ids.append(await create(service, f"file {index}".encode(), expires_after=HOUR))

    async with anyio.create_task_group() as group:
        for index in range(count):
            group.start_soon(one, index)
    return ids


SHARED_SQL = ["memory+sqlite", "local+sqlite", "memory+postgresql", "s3+postgresql"]


@pytest.mark.parametrize("pair", SHARED_SQL, indirect=True)
async def test_two_concurrent_sweepers_claim_each_of_50_expired_files_exactly_once(
    env: Backends,
) -> None:
    expired: list[tuple[str, str]] = []

    def hook(name: str) -> Any:
        def record(event: FileEvent) -> None:
            if event.kind == "expired":
                expired.append((name, event.file.id))

        return record

    first = env.service(events=[hook("first")])
    second = env.service(metadata=env.another_store(), events=[hook("second")])
    ids = await create_expiring(first, 50)
    keys = {key for _, _, key in await env.records()}
    env.clock.advance(HOUR)
    reports: dict[str, SweepReport] = {}

    async def run(name: str, service: FilesService) -> None:
        reports[name] = await service.sweep()

    async with anyio.create_task_group() as group:
        group.start_soon(run, "first", first)
        group.start_soon(run, "second", second)

    assert sum(r.removed for r in reports.values()) == 50, reports
    assert sum(r.expired for r in reports.values()) == 50, reports
    assert [r.failed for r in reports.values()] == [0, 0]
    swept = [file_id for _, file_id in expired]
    assert sorted(swept) == sorted(ids)  # each file claimed, removed and reported exactly once
    assert await env.records() == []
    assert [key for key in keys if key in env.leftovers()] == []
    assert await first.metadata.usage(OWNER) == Usage(files=0, bytes=0)


class OutrunStore(SQLMetadataStore):
    """A store whose first claim is lost to a rival sweeper: the rival, on the same tables,
    claims that very candidate between this sweeper's selection and its claim."""

    rival: SQLMetadataStore
    lost: list[FileRecord]

    async def _claim(self, candidates: list[FileRecord], now: int) -> list[FileRecord]:
        if not self.lost:
            assert await self.rival._claim(candidates[:1], now) == candidates[:1]
            self.lost.append(candidates[0])
        return await super()._claim(candidates, now)


@pytest.mark.parametrize("pair", ["local+sqlite", "s3+postgresql"], indirect=True)
async def test_a_sweep_that_loses_a_claim_to_another_sweeper_goes_on_until_nothing_is_left(
    env: Backends,
) -> None:
    assert env.metadata_url is not None
    assert env.table_prefix is not None
    outrun = OutrunStore(env.metadata_url, table_prefix=env.table_prefix)
    outrun.rival, outrun.lost = env.another_store(), []
    env.extra_stores.append(outrun)
    service = env.service(metadata=outrun)
    ids = await create_expiring(service, 30)
    env.clock.advance(HOUR)

    report = await service.sweep(batch=7)
    assert len(outrun.lost) == 1  # the rival's, which the rival removes itself
    assert report == SweepReport(expired=29, removed=29), report
    assert [(i, state) for i, state, _ in await env.records()] == [(outrun.lost[0].id, "deleting")]
    assert outrun.lost[0].id in ids


# -- events ----------------------------------------------------------------------------------


async def test_an_event_hook_gets_one_expired_event_per_swept_visible_file(env: Backends) -> None:
    events: list[FileEvent] = []

    async def hook(event: FileEvent) -> None:
        events.append(event)

    service = env.service(events=[hook])
    expiring = [await create(service, b"x" * n, expires_after=HOUR) for n in (1, 2, 3)]
    await create(service, b"stays")
    upload = await service.begin_upload(OWNER, filename="dead.bin", purpose="user_data")
    await upload.write(chunks(b"dead" * RECORD_AFTER))
    events.clear()

    env.clock.advance(HOUR + 1)
    assert await service.sweep(stale_after=HOUR) == SweepReport(expired=3, stale=1, removed=4)
    assert sorted(e.file.id for e in events) == sorted(expiring)
    assert {(e.kind, e.owner, e.at) for e in events} == {("expired", OWNER, int(env.clock()))}
    assert sorted(e.file.bytes for e in events) == [1, 2, 3]


@pytest.mark.parametrize("pair", REPRESENTATIVE, indirect=True)
async def test_an_expired_file_whose_first_removal_failed_still_gets_its_expired_event(
    env: Backends,
) -> None:
    events: list[FileEvent] = []
    service = env.service(storage=FlakyDeletes(env.storage), events=[events.append])
    file_id = await create(service, b"expiring", expires_after=HOUR)
    events.clear()
    env.clock.advance(HOUR)
    assert (await service.sweep(stale_after=HOUR)).failed == 1
    env.clock.advance(HOUR + 1)
    assert (await service.sweep(stale_after=HOUR)).removed == 1
    assert [(e.kind, e.file.id) for e in events] == [("expired", file_id)]


# -- the app's own sweeper -------------------------------------------------------------------


async def wait_until(condition: Any, seconds: float = 10.0) -> None:
    with anyio.fail_after(seconds):
        while True:
            if await condition():
                return
            await anyio.sleep(0.02)


@pytest.mark.parametrize("pair", REPRESENTATIVE, indirect=True)
async def test_the_apps_lifespan_sweeper_removes_an_expired_file_without_a_sweep_call(
    env: Backends,
) -> None:
    service = env.service()
    file_id = await create(service, b"expiring", expires_after=HOUR)
    key = await env.key_of(file_id)
    kept = await create(service, b"kept")
    env.clock.advance(HOUR)
    app = create_app(service, auth=api_key_auth({KEY: OWNER}), sweep_interval=0.05)

    async def swept() -> bool:
        return await env.metadata.existing_keys([key]) == set()

    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(
            transport=transport, base_url="http://files", headers=AUTH
        ) as client:
            assert (await client.get(f"/v1/files/{file_id}")).status_code == 404
            await wait_until(swept)
            assert (await client.get(f"/v1/files/{kept}/content")).content == b"kept"
    await env.assert_gone(key)
    assert await listed(service) == [kept]


@pytest.mark.parametrize("pair", REPRESENTATIVE, indirect=True)
async def test_the_apps_sweeper_counts_an_upload_as_dead_after_sweep_stale_after(
    env: Backends,
) -> None:
    service = env.service()
    upload = await service.begin_upload(OWNER, filename="dead.bin", purpose="user_data")
    await upload.write(chunks(b"half of it" * RECORD_AFTER))  # and the process dies
    key = upload.record.storage_key
    env.clock.advance(10 * 60 + 1)  # past a 10-minute stale_after, not the default hour
    app = create_app(service, sweep_interval=0.05, sweep_stale_after=10 * 60)
    async with app.router.lifespan_context(app):
        await wait_until(_async_call(lambda: env.records(), lambda records: records == []))
    await env.assert_gone(key)


def _async_call(call: Any, check: Any) -> Any:
    async def condition() -> bool:
        return bool(check(await call()))

    return condition


async def test_a_real_servers_sweeper_removes_an_expired_file_without_a_sweep_call() -> None:
    clock = ManualClock()
    storage, metadata = MemoryStorage(clock=clock), MemoryMetadataStore()
    service = FilesService(storage, metadata, clock=clock)
    file_id = await create(service, b"expiring", expires_after=HOUR)
    kept = await create(service, b"kept")
    clock.advance(HOUR)
    app = create_app(service, auth=api_key_auth({KEY: OWNER}), sweep_interval=0.05)
    with serve(app) as server:
        async with httpx.AsyncClient(base_url=server.url, headers=AUTH) as client:
            assert (await client.get(f"/v1/files/{file_id}")).status_code == 404
            # The server's sweeper runs in the server's thread; len() is a safe look.
            await wait_until(_async(lambda: len(metadata._records) == 1))
            assert len(storage._objects) == 1
            assert (await client.get(f"/v1/files/{kept}/content")).content == b"kept"
            assert [f["id"] for f in (await client.get("/v1/files")).json()["data"]] == [kept]
    assert list(metadata._records) == [kept]


def _async(check: Any) -> Any:
    async def condition() -> bool:
        return bool(check())

    return condition


async def test_a_sweep_failing_for_an_outage_logs_one_line_and_the_next_sweep_runs(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = ManualClock()
    inner = MemoryMetadataStore()
    metadata = FaultyMetadataStore(inner)
    service = FilesService(MemoryStorage(clock=clock), metadata, clock=clock)
    file_id = await create(service, b"expiring", expires_after=HOUR)
    clock.advance(HOUR)
    metadata.fail_claim_for_sweep = 1
    stop = anyio.Event()
    async with anyio.create_task_group() as tasks:
        tasks.start_soon(lambda: service.run_sweeper(interval=0.05, stop=stop))
        await wait_until(_async(lambda: file_id not in inner._records))
        stop.set()
    failed = [r for r in caplog.records if "a sweep failed" in r.getMessage()]
    assert len(failed) == 1
    assert failed[0].levelname == "WARNING"
    assert failed[0].exc_info is None
    assert "injected fault in claim_for_sweep" in failed[0].getMessage()
