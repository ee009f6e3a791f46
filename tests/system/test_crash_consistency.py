"""`openai-files serve` killed with SIGKILL while uploads and deletes are in flight.

The server is restarted on the same data (local disk + SQLite in a data directory, or an S3
bucket + PostgreSQL tables). What the clients were told must hold: every upload answered 200
and not deleted is listed and reads back with the SHA-256 it was uploaded with; every delete
answered 200 stays deleted. An upload or delete whose answer never came may have happened or
not, but wholly: a listed file reads back whole, as one of the bodies that were sent. A sweep
afterwards removes what the crash left: temporary files, pending records, unrecorded bytes.
"""

from __future__ import annotations

import hashlib
import math
import os
import random
import signal
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import httpx
from sqlalchemy import select

from openai_files import FilesService, LocalStorage, SQLMetadataStore, Storage
from openai_files.ids import is_inline

from ..clusters import KEY, Cluster
from ..databases import POSTGRES_URL
from ..s3_servers import S3Server
from ..support import ServerProcess, stored_files

AUTH = {"authorization": f"Bearer {KEY}"}
SLOW_UPLOADS = 4
QUICK_UPLOADERS = 2
SEED_FILES = 6
KILL_AFTER = 1.5


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@dataclass
class Traffic:
    """Clients of one server: uploads that stream until the server dies, uploads and deletes
    in a loop. Records what the server confirmed and everything that was sent."""

    url: str
    confirmed: dict[str, str] = field(default_factory=dict)
    """id -> SHA-256 of every upload answered 200."""
    sent: set[tuple[int, str]] = field(default_factory=set)
    """(size, SHA-256) of every upload body sent, answered or not."""
    deleted: set[str] = field(default_factory=set)
    """Ids whose delete was answered 200."""
    unanswered_deletes: set[str] = field(default_factory=set)
    """Ids whose delete was sent but never answered: the file may or may not be gone."""
    unexpected: list[str] = field(default_factory=list)
    """Answers other than 200 while the server was up: there should be none."""
    stop: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def client(self, url: str | None = None) -> httpx.Client:
        return httpx.Client(base_url=url or self.url, headers=AUTH, timeout=30)

    def upload(self, client: httpx.Client, data: bytes) -> str | None:
        with self.lock:
            self.sent.add((len(data), sha256(data)))
        response = client.post(
            "/v1/files", files={"file": ("q.bin", data)}, data={"purpose": "user_data"}
        )
        if response.status_code != 200:
            self.unexpected.append(f"upload: {response.status_code} {response.text}")
            return None
        file_id: str = response.json()["id"]
        with self.lock:
            self.confirmed[file_id] = sha256(data)
        return file_id

    def slow_upload(self) -> None:
        """An upload that keeps sending until the server dies under it."""

        def body() -> Iterator[bytes]:
            yield (
                b'--b\r\nContent-Disposition: form-data; name="purpose"\r\n\r\nuser_data\r\n'
                b'--b\r\nContent-Disposition: form-data; name="file"; filename="slow.bin"\r\n\r\n'
            )
            while not self.stop.is_set():
                yield os.urandom(64 * 1024)
                self.stop.wait(0.02)

        headers = {**AUTH, "content-type": "multipart/form-data; boundary=b"}
        try:
            response = httpx.post(self.url + "/v1/files", content=body(), headers=headers)
        except httpx.HTTPError:
            return  # the server was killed: that is the point
        self.unexpected.append(f"a never-ending upload was answered {response.status_code}")

    def quick_uploads(self, seed: int) -> None:
        chance = random.Random(seed)
        with self.client() as client:
            while not self.stop.is_set():
                try:
                    self.upload(client, os.urandom(chance.randrange(0, 300_000)))
                except httpx.HTTPError:
                    self.stop.wait(0.05)  # killed, or not yet restarted

    def deletes(self, seed: int) -> None:
        chance = random.Random(seed)
        with self.client() as client:
            while not self.stop.is_set():
                with self.lock:
                    candidates = sorted(
                        set(self.confirmed) - self.deleted - self.unanswered_deletes
                    )
                    file_id = chance.choice(candidates) if candidates else None
                    if file_id is not None:
                        self.unanswered_deletes.add(file_id)
                if file_id is None:
                    self.stop.wait(0.01)
                    continue
                try:
                    response = client.delete(f"/v1/files/{file_id}")
                except httpx.HTTPError:
                    self.stop.wait(0.05)
                    continue
                if response.status_code != 200:
                    self.unexpected.append(f"delete: {response.status_code} {response.text}")
                with self.lock:
                    self.unanswered_deletes.discard(file_id)
                    self.deleted.add(file_id)
                self.stop.wait(0.05)

    def threads(self, crash: int) -> list[threading.Thread]:
        """The clients until the crash numbered ``crash``, which varies their choices."""
        seed = 100 * crash
        work: list[tuple[Callable[..., None], tuple[int, ...]]] = [(self.slow_upload, ())]
        work *= SLOW_UPLOADS
        work += [(self.quick_uploads, (seed + n,)) for n in range(QUICK_UPLOADERS)]
        work += [(self.deletes, (seed + 99,))]
        return [threading.Thread(target=f, args=args, daemon=True) for f, args in work]


def crash_under_traffic(server: ServerProcess, traffic: Traffic, crash: int) -> None:
    """Start traffic against ``server``, SIGKILL it mid-flight, stop the traffic."""
    traffic.url, traffic.stop = server.url, threading.Event()
    with traffic.client() as client:
        for _ in range(SEED_FILES):
            assert traffic.upload(client, os.urandom(100_000)) is not None
    threads = traffic.threads(crash)
    for thread in threads:
        thread.start()
    time.sleep(KILL_AFTER)
    server.process.send_signal(signal.SIGKILL)
    server.process.wait(timeout=10)
    traffic.stop.set()
    for thread in threads:
        thread.join(timeout=30)
    assert traffic.unexpected == []


def check_clients_view(url: str, traffic: Traffic) -> None:
    """What the clients were told still holds, and nothing listed is broken."""
    with traffic.client(url) as client:
        listed = client.get("/v1/files", params={"limit": 10_000}).json()["data"]
        sizes = {f["id"]: f["bytes"] for f in listed}
        must_exist = set(traffic.confirmed) - traffic.deleted - traffic.unanswered_deletes
        assert must_exist <= set(sizes), "files confirmed before the crash were lost"
        assert not traffic.deleted & set(sizes), "files deleted before the crash came back"
        for file_id, size in sizes.items():
            content = client.get(f"/v1/files/{file_id}/content")
            assert content.status_code == 200, f"{file_id} is listed but cannot be read"
            assert len(content.content) == size
            if file_id in traffic.confirmed:
                assert sha256(content.content) == traffic.confirmed[file_id]
            else:  # its upload was never answered: it must be one of the bodies sent, whole
                assert (size, sha256(content.content)) in traffic.sent


@dataclass
class Shape:
    """One deployment shape: how to start its server, and how to reach its backends from
    this process once the server is stopped."""

    workdir: Path
    args: list[str]
    env: dict[str, str]
    open_backends: Callable[[], tuple[Storage, SQLMetadataStore]]
    partials: Callable[[], list[str]]
    """What interrupted puts left in storage: temporary files, incomplete uploads."""

    def server(self) -> ServerProcess:
        server = ServerProcess(self.workdir, *self.args, env=self.env)
        try:
            server.wait_until_serving()
        except BaseException:
            server.stop()
            raise
        return server


async def records(store: SQLMetadataStore) -> list[tuple[str, str]]:
    """(state, storage key) of every record, in any state."""
    files = store.tables.files
    async with store.engine.connect() as connection:
        rows = (await connection.execute(select(files.c.state, files.c.storage_key))).all()
    return [(row.state, row.storage_key) for row in rows]


async def kept_keys(store: SQLMetadataStore) -> list[str]:
    """The storage key of every small file's bytes the store keeps, sorted."""
    kept = store.tables.file_bytes
    async with store.engine.connect() as connection:
        rows = (await connection.execute(select(kept.c.storage_key))).all()
    return sorted(row.storage_key for row in rows)


async def sweep_after_the_crash(shape: Shape) -> dict[str, Any]:
    """Sweep with the library on the crashed server's backends, as a host's job would; check
    that nothing is left but the files' bytes and their active records."""
    storage, metadata = shape.open_backends()
    later = time.time() + 60  # everything the crash left is stale by now
    async with FilesService(storage, metadata, clock=lambda: later) as service:
        before = await records(metadata)
        partials_before = shape.partials()
        report = await service.sweep(stale_after=0)
        orphans = await service.sweep_orphans(grace=0)
        after = await records(metadata)
        assert {state for state, _ in after} <= {"active"}
        assert shape.partials() == []
        listable: Any = storage
        keys = sorted([key async for key in listable.iter_keys(modified_before=math.inf)])
        in_storage = sorted(key for _, key in after if not is_inline(key))
        assert keys == in_storage, "bytes without a record, or the reverse"
        assert await metadata.existing_keys(keys) == set(keys)
        in_database = sorted(key for _, key in after if is_inline(key))
        assert await kept_keys(metadata) == in_database, (
            "kept bytes without a record, or the reverse"
        )
    return {
        "pending": [state for state, _ in before].count("pending"),
        "partials": len(partials_before),
        "stale": report.stale,
        "orphans": orphans,
    }


def run_crash(shape: Shape, *, rounds: int) -> None:
    """Kill the server under traffic ``rounds`` times, restarting it on the same data each
    time; then check the clients' view, sweep, and check it again."""
    traffic = Traffic("")
    for crash in range(rounds):
        server = shape.server()
        try:
            if crash:
                check_clients_view(server.url, traffic)
            crash_under_traffic(server, traffic, crash)
        finally:
            server.stop()
    assert len(traffic.confirmed) > rounds * SEED_FILES, "no upload completed under traffic"
    restarted = shape.server()
    try:
        check_clients_view(restarted.url, traffic)
    finally:
        restarted.stop()
    swept = anyio.run(sweep_after_the_crash, shape)
    # The never-ending uploads died mid-stream: their records waited for the sweep.
    assert swept["pending"] >= rounds * SLOW_UPLOADS
    assert swept["stale"] >= rounds * SLOW_UPLOADS
    restarted = shape.server()
    try:
        check_clients_view(restarted.url, traffic)
    finally:
        restarted.stop()


def test_a_killed_embedded_server_keeps_every_confirmed_file_and_a_sweep_clears_the_rest(
    tmp_path: Path,
) -> None:
    data_dir = tmp_path / "data"
    root = data_dir / "files"

    def open_backends() -> tuple[Storage, SQLMetadataStore]:
        return LocalStorage(root), SQLMetadataStore(f"sqlite+aiosqlite:///{data_dir / 'files.db'}")

    def partials() -> list[str]:
        return [name for name in stored_files(root) if name.endswith(".part")]

    args = ["--data-dir", str(data_dir), "--api-key", f"{KEY}=tenant", "--sweep-interval", "0"]
    run_crash(
        Shape(tmp_path, [*args, "--log-level", "warning"], {}, open_backends, partials), rounds=2
    )


def test_a_killed_replica_keeps_every_confirmed_file_and_a_sweep_clears_the_rest(
    cluster: Cluster, moto: S3Server
) -> None:
    bucket = cluster.storage_url.removeprefix("s3://").split("/", 1)[0]

    def open_backends() -> tuple[Storage, SQLMetadataStore]:
        storage = moto.storage(bucket, prefix="shared/")
        return storage, SQLMetadataStore(POSTGRES_URL, table_prefix=cluster.table_prefix)

    def partials() -> list[str]:
        # The never-ending uploads stay below the part size (8 MiB) before the kill, so none
        # is multipart. (A multipart upload cut off by a kill is left for the bucket's
        # lifecycle rule, as `S3Storage` documents.)
        return moto.upload_names(bucket, "shared/")

    args = [*cluster.args(), "--sweep-interval", "0"]
    run_crash(Shape(cluster.workdir, args, cluster.env, open_backends, partials), rounds=1)
