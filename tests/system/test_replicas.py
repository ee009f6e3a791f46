"""Two `openai-files serve` replicas sharing one PostgreSQL database and one S3 bucket."""

from __future__ import annotations

import contextlib
import hashlib
import os
import random
import signal
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import anyio
import httpx
import openai
import pytest
from sqlalchemy import select

from openai_files import SQLMetadataStore

from ..clusters import KEY, Cluster
from ..databases import POSTGRES_URL
from ..s3_servers import S3Server
from ..support import server_process


@pytest.fixture
def pair(cluster: Cluster) -> Iterator[tuple[str, str]]:
    with (
        server_process(cluster.workdir, *cluster.args(), env=cluster.env) as a,
        server_process(cluster.workdir, *cluster.args(), env=cluster.env) as b,
    ):
        yield a.url, b.url


def sdk(url: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=url + "/v1", api_key=KEY, max_retries=0)


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_a_file_created_on_one_replica_is_listed_read_and_deleted_on_the_other(
    pair: tuple[str, str],
) -> None:
    a, b = sdk(pair[0]), sdk(pair[1])
    data = os.urandom(6 * 1024 * 1024 + 3)  # more than one S3 part
    created = a.files.create(file=("big.bin", data), purpose="assistants")
    assert [f.id for f in b.files.list()] == [created.id]
    assert sha256(b.files.content(created.id).content) == sha256(data)
    assert b.files.delete(created.id).deleted
    with pytest.raises(openai.NotFoundError):
        a.files.retrieve(created.id)
    assert list(a.files.list()) == []


class Workload:
    """Random creates, lists, reads and deletes by one client, recording every failure."""

    def __init__(self, urls: tuple[str, str], seed: int, operations: int) -> None:
        self.clients = [sdk(url) for url in urls]
        self.random = random.Random(seed)
        self.operations = operations
        self.mine: dict[str, str] = {}  # file id -> sha256 of what was uploaded
        self.errors: list[str] = []

    def run(self) -> None:
        for _ in range(self.operations):
            client = self.random.choice(self.clients)
            action = self.random.choice(["create", "create", "list", "content", "delete"])
            try:
                getattr(self, action)(client)
            except Exception as exc:  # every failure counts, whatever it is
                self.errors.append(f"{action}: {exc!r}")

    def create(self, client: openai.OpenAI) -> None:
        data = os.urandom(self.random.randrange(0, 200_000))
        created = client.files.create(file=("w.bin", data), purpose="user_data")
        assert created.bytes == len(data)
        self.mine[created.id] = sha256(data)

    def list(self, client: openai.OpenAI) -> None:
        ids = [f.id for f in client.files.list(limit=20)]
        assert len(ids) == len(set(ids)), "a page walk repeated a file"

    def content(self, client: openai.OpenAI) -> None:
        if self.mine:
            file_id = self.random.choice(sorted(self.mine))
            assert sha256(client.files.content(file_id).content) == self.mine[file_id]

    def delete(self, client: openai.OpenAI) -> None:
        if self.mine:
            file_id = self.random.choice(sorted(self.mine))
            assert client.files.delete(file_id).deleted
            del self.mine[file_id]


def test_400_concurrent_operations_over_two_replicas_lose_and_corrupt_nothing(
    pair: tuple[str, str],
) -> None:
    workloads = [Workload(pair, seed, operations=25) for seed in range(16)]
    with ThreadPoolExecutor(max_workers=16) as pool:
        for future in [pool.submit(w.run) for w in workloads]:
            future.result()
    assert [error for w in workloads for error in w.errors] == []
    surviving = {file_id: digest for w in workloads for file_id, digest in w.mine.items()}
    for url in pair:
        client = sdk(url)
        listed = [f.id for f in client.files.list(limit=7)]
        assert sorted(listed) == sorted(surviving)
        assert len(listed) == len(set(listed))
    client = sdk(pair[1])
    for file_id, digest in surviving.items():
        assert sha256(client.files.content(file_id).content) == digest


def slow_upload(url: str, stop: threading.Event) -> None:
    """An upload that keeps sending until the server dies under it."""

    def body() -> Iterator[bytes]:
        yield (
            b'--b\r\nContent-Disposition: form-data; name="purpose"\r\n\r\nuser_data\r\n'
            b'--b\r\nContent-Disposition: form-data; name="file"; filename="slow.bin"\r\n\r\n'
        )
        while not stop.is_set():
            yield os.urandom(256 * 1024)
            stop.wait(0.02)

    headers = {"authorization": f"Bearer {KEY}", "content-type": "multipart/form-data; boundary=b"}
    with contextlib.suppress(httpx.HTTPError):  # the replica is killed: that is the point
        httpx.post(url + "/v1/files", content=body(), headers=headers, timeout=30)


async def records(prefix: str) -> list[tuple[str, str, str]]:
    """(state, id, storage key) of every record, visible or not."""
    store = SQLMetadataStore(POSTGRES_URL, table_prefix=prefix)
    files = store._files
    async with store.engine.connect() as connection:
        query = select(files.c.state, files.c.id, files.c.storage_key)
        rows = (await connection.execute(query)).all()
    await store.aclose()
    return [(row.state, row.id, row.storage_key) for row in rows]


def test_killing_a_replica_mid_upload_leaves_no_record_without_bytes(
    cluster: Cluster, moto: S3Server
) -> None:
    survivor, victim = cluster.replica(), cluster.replica()
    try:
        kept = sdk(survivor.url).files.create(file=("kept.bin", b"kept"), purpose="vision")
        stop = threading.Event()
        uploads = [threading.Thread(target=slow_upload, args=(victim.url, stop)) for _ in range(4)]
        for upload in uploads:
            upload.start()
        threading.Event().wait(1.5)  # several MiB into each upload, some S3 parts sent
        victim.process.send_signal(signal.SIGKILL)
        victim.process.wait(timeout=10)
        stop.set()
        for upload in uploads:
            upload.join(timeout=30)
        client = sdk(survivor.url)
        assert [f.id for f in client.files.list()] == [kept.id]
        assert client.files.content(kept.id).content == b"kept"
        after = client.files.create(file=("after.bin", b"after"), purpose="vision")
        assert client.files.content(after.id).content == b"after"
        bucket = cluster.storage_url.removeprefix("s3://").split("/", 1)[0]
        objects = set(moto.object_names(bucket, "shared/"))
        found = anyio.run(records, cluster.table_prefix)
        # The kill interrupted uploads: their records stay pending, invisible to clients.
        assert [state for state, _, _ in found].count("pending") == len(uploads)
        for state, file_id, key in found:
            if state == "active":
                assert "shared/" + key in objects, f"{file_id} has a record but no bytes"
    finally:
        survivor.stop()
        victim.stop()
