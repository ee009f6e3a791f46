"""`S3Storage` against two independent S3 servers: moto's and ``rclone serve s3``."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import time
import tracemalloc
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator

import anyio
import anyio.to_thread
import httpx
import pytest

from openai_files import BackendUnavailable, BlobNotFound, open_storage
from openai_files.storage.base import PresignedURLs, Storage
from openai_files.storage.s3 import DEFAULT_PART_SIZE, MIN_PART_SIZE, S3Storage
from openai_files.testing import StorageConformance

from ..s3_servers import ACCESS_KEY, REGION, SECRET_KEY, S3Server
from ..support import free_port

pytestmark = pytest.mark.anyio

MIB = 1024 * 1024
PART = MIN_PART_SIZE


@pytest.fixture(params=["moto", "rclone"])
def server(request: pytest.FixtureRequest) -> S3Server:
    found: S3Server = request.getfixturevalue(request.param)
    return found


@pytest.fixture
def bucket(server: S3Server) -> Iterator[str]:
    name = server.create_bucket()
    yield name
    server.remove_bucket(name)


@pytest.fixture
async def storage(server: S3Server, bucket: str) -> AsyncIterator[S3Storage]:
    storage = server.storage(bucket, prefix="files/")
    yield storage
    await storage.aclose()


class S3Conformance(StorageConformance):
    """The conformance suite over one S3 server, each test in a bucket of its own."""

    server_name: str

    @pytest.fixture
    async def storage(self, request: pytest.FixtureRequest) -> AsyncIterator[S3Storage]:
        self.server: S3Server = request.getfixturevalue(self.server_name)
        bucket = self.server.create_bucket()
        storage = self.server.storage(bucket, prefix="files/")
        yield storage
        await storage.aclose()
        self.server.remove_bucket(bucket)

    async def leftovers(self, storage: Storage) -> list[str]:
        assert isinstance(storage, S3Storage)
        return await anyio.to_thread.run_sync(self.server.leftovers, storage)


class TestS3StorageMoto(S3Conformance):
    server_name = "moto"


class TestS3StorageRclone(S3Conformance):
    server_name = "rclone"


async def generated(
    total: int, chunk_size: int, seen: Callable[[bytes], object]
) -> AsyncIterator[bytes]:
    """``total`` random bytes in chunks, each passed to ``seen`` as it is made."""
    for offset in range(0, total, chunk_size):
        chunk = os.urandom(min(chunk_size, total - offset))
        seen(chunk)
        yield chunk


async def generated_from(data: bytes, chunk_size: int = 1000 * 1000) -> AsyncIterator[bytes]:
    for offset in range(0, len(data), chunk_size):
        yield data[offset : offset + chunk_size]


async def read(storage: S3Storage, key: str, start: int = 0, end: int | None = None) -> bytes:
    return b"".join([chunk async for chunk in await storage.get(key, start=start, end=end)])


async def uploads_in_progress(server: S3Server, storage: S3Storage) -> list[str]:
    return await anyio.to_thread.run_sync(server.upload_names, storage.bucket, storage.prefix)


async def test_a_failed_multipart_upload_is_aborted_and_leaves_nothing(
    server: S3Server, storage: S3Storage
) -> None:
    seen_in_progress: list[str] = []

    async def two_parts_then_failure() -> AsyncIterator[bytes]:
        for _ in range(12):
            yield os.urandom(MIB)
        seen_in_progress.extend(await uploads_in_progress(server, storage))
        raise RuntimeError("client went away")

    with pytest.raises(RuntimeError, match="client went away"):
        await storage.put("aa/bb/multipart", two_parts_then_failure())
    assert seen_in_progress == ["files/aa/bb/multipart"]
    assert await uploads_in_progress(server, storage) == []
    assert await anyio.to_thread.run_sync(server.leftovers, storage) == []
    with pytest.raises(BlobNotFound):
        await storage.head("aa/bb/multipart")


async def test_a_cancelled_multipart_upload_is_aborted_and_leaves_nothing(
    server: S3Server, storage: S3Storage
) -> None:
    started = anyio.Event()
    seen_in_progress: list[str] = []

    async def stalled_after_a_part() -> AsyncIterator[bytes]:
        for _ in range(7):
            yield os.urandom(MIB)
        seen_in_progress.extend(await uploads_in_progress(server, storage))
        started.set()
        await anyio.sleep_forever()
        yield b""  # pragma: no cover

    async with anyio.create_task_group() as group:
        group.start_soon(storage.put, "aa/bb/cancelled", stalled_after_a_part())
        await started.wait()
        group.cancel_scope.cancel()
    assert seen_in_progress == ["files/aa/bb/cancelled"]
    assert await anyio.to_thread.run_sync(server.leftovers, storage) == []


async def test_a_put_cancelled_while_it_starts_a_multipart_upload_leaves_nothing(
    server: S3Server, storage: S3Storage
) -> None:
    # The first chunk is larger than a part, so the write that sends it creates the multipart
    # upload; the cancellation lands while that write is in flight, at varying points.
    async def one_big_chunk_then_stall(handed_over: anyio.Event) -> AsyncIterator[bytes]:
        handed_over.set()
        yield os.urandom(PART + MIB)
        await anyio.sleep_forever()

    for attempt, delay in enumerate([0, 0.001, 0.002, 0.004, 0.008, 0.016]):
        handed_over = anyio.Event()
        async with anyio.create_task_group() as group:
            chunks = one_big_chunk_then_stall(handed_over)
            group.start_soon(storage.put, f"aa/bb/racing{attempt}", chunks)
            await handed_over.wait()
            await anyio.sleep(delay)
            group.cancel_scope.cancel()
    assert await anyio.to_thread.run_sync(server.leftovers, storage) == []


async def test_an_os_error_from_the_chunks_is_not_taken_for_a_storage_failure(
    server: S3Server, storage: S3Storage
) -> None:
    async def parts_then_connection_reset() -> AsyncIterator[bytes]:
        for _ in range(6):
            yield os.urandom(MIB)
        raise ConnectionResetError("the uploading client disconnected")

    with pytest.raises(ConnectionResetError, match="uploading client disconnected"):
        await storage.put("aa/bb/reset", parts_then_connection_reset())
    assert await anyio.to_thread.run_sync(server.leftovers, storage) == []


async def test_a_failed_put_keeps_the_previous_object_after_a_multipart_attempt(
    storage: S3Storage,
) -> None:
    await storage.put("aa/bb/kept", generated_from(b"x" * 100))

    async def parts_then_failure() -> AsyncIterator[bytes]:
        for _ in range(6):
            yield os.urandom(MIB)
        raise ValueError("boom")

    with pytest.raises(ValueError, match="boom"):
        await storage.put("aa/bb/kept", parts_then_failure())
    assert await storage.head("aa/bb/kept") == 100


async def test_a_large_object_round_trips_while_the_put_buffers_a_few_parts(
    storage: S3Storage,
) -> None:
    # Two parts in flight and the next one filling: the put holds at most three parts,
    # whatever the size of the object (here eight parts and a bit).
    total = 40 * MIB + 123
    sent = hashlib.sha256()
    tracemalloc.start()
    try:
        blob = await storage.put("aa/bb/large", generated(total, 256 * 1024, sent.update))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert (blob.size, blob.sha256) == (total, sent.hexdigest())
    assert storage.parts_in_flight == 2
    assert peak < 3 * PART, f"put held {peak / MIB:.1f} MiB at its peak"
    received = hashlib.sha256()
    size = 0
    async for chunk in await storage.get("aa/bb/large"):
        received.update(chunk)
        size += len(chunk)
    assert (size, received.hexdigest()) == (total, sent.hexdigest())
    assert await storage.head("aa/bb/large") == total


async def test_ranges_of_a_multipart_object_cross_part_boundaries(storage: S3Storage) -> None:
    data = os.urandom(2 * PART + 1000)
    await storage.put("aa/bb/ranged", generated_from(data))
    assert await read(storage, "aa/bb/ranged", PART - 10, PART + 10) == data[PART - 10 : PART + 10]
    assert await read(storage, "aa/bb/ranged", 2 * PART) == data[2 * PART :]


async def test_objects_live_under_the_prefix(server: S3Server, storage: S3Storage) -> None:
    await storage.put("aa/bb/named", generated_from(b"bytes"))
    names = await anyio.to_thread.run_sync(server.object_names, storage.bucket, "")
    assert names == ["files/aa/bb/named"]


async def test_a_presigned_url_serves_the_exact_bytes(storage: S3Storage) -> None:
    data = os.urandom(300_000)
    await storage.put("aa/bb/shared", generated_from(data, 64 * 1024))
    assert isinstance(storage, PresignedURLs)
    url = await storage.presigned_url("aa/bb/shared", expires_in=60)
    async with httpx.AsyncClient(trust_env=False) as client:
        response = await client.get(url)
    assert response.status_code == 200
    assert response.content == data


async def test_a_missing_bucket_makes_put_unavailable(server: S3Server) -> None:
    storage = server.storage("no-such-bucket-here")
    with pytest.raises(BackendUnavailable, match="Storage is unavailable"):
        await storage.put("aa/bb/x", generated_from(b"bytes"))


async def test_refused_credentials_make_every_operation_unavailable(rclone: S3Server) -> None:
    # rclone checks signatures against its --auth-key; moto accepts any credentials.
    bucket = rclone.create_bucket()
    try:
        storage = S3Storage(
            bucket,
            endpoint=rclone.endpoint,
            access_key_id="someoneelsekey",
            secret_access_key="someoneelsesecret",
            allow_http=True,
            max_retries=0,
        )
        for attempt in operations(storage):
            with pytest.raises(BackendUnavailable, match="refused the credentials"):
                await attempt()
    finally:
        rclone.remove_bucket(bucket)


def operations(storage: S3Storage) -> list[Callable[[], Awaitable[object]]]:
    return [
        lambda: storage.put("aa/bb/x", generated_from(b"bytes")),
        lambda: storage.put("aa/bb/x", generated_from(os.urandom(PART + 1), MIB)),
        lambda: storage.get("aa/bb/x"),
        lambda: storage.get("aa/bb/x", start=5),
        lambda: storage.head("aa/bb/x"),
        lambda: storage.delete("aa/bb/x"),
    ]


async def test_an_unreachable_endpoint_fails_within_seconds_with_backend_unavailable() -> None:
    storage = S3Storage(
        "bucket",
        endpoint=f"http://127.0.0.1:{free_port()}",
        access_key_id="key",
        secret_access_key="secret",
        allow_http=True,
    )
    for attempt in operations(storage):
        began = time.monotonic()
        with pytest.raises(BackendUnavailable, match="could not be reached"):
            await attempt()
        assert time.monotonic() - began < 5


def test_from_url_reads_bucket_prefix_and_options() -> None:
    storage = S3Storage.from_url(
        "s3://my-bucket/some/prefix?endpoint=http://127.0.0.1:9000&region=eu-west-1"
        "&allow_http=true&part_size=10485760"
    )
    assert storage.bucket == "my-bucket"
    assert storage.prefix == "some/prefix/"
    assert storage.endpoint == "http://127.0.0.1:9000"
    assert storage.region == "eu-west-1"
    assert storage.allow_http is True
    assert storage.part_size == 10 * MIB


def test_from_url_defaults_to_no_prefix_and_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("AWS_ALLOW_HTTP", "true")
    storage = S3Storage.from_url("s3://my-bucket")
    assert (storage.bucket, storage.prefix, storage.endpoint) == ("my-bucket", "", None)
    assert storage.allow_http is True
    assert storage.part_size == DEFAULT_PART_SIZE


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("s3:///prefix", "not an S3 storage URL"),
        ("gs://bucket", "not an S3 storage URL"),
        ("s3://bucket?endpont=http://x", "unknown S3 storage URL option"),
        ("s3://bucket?allow_http=maybe", "allow_http must be true or false"),
        ("s3://bucket?part_size=1048576", "part_size must be between"),
        ("s3://bucket?part_size=big", "part_size must be a whole number"),
        ("s3://bucket?parts_in_flight=0", "parts_in_flight must be at least 1"),
        ("s3://key:secret@bucket", "credentials"),
    ],
)
def test_from_url_refuses_malformed_urls(url: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        S3Storage.from_url(url)


async def test_open_storage_takes_endpoint_and_credentials_from_the_aws_environment(
    rclone: S3Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    bucket = rclone.create_bucket()
    try:
        monkeypatch.setenv("AWS_ENDPOINT_URL", rclone.endpoint)
        monkeypatch.setenv("AWS_ALLOW_HTTP", "true")
        monkeypatch.setenv("AWS_REGION", REGION)
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", ACCESS_KEY)
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
        storage = open_storage(f"s3://{bucket}/from-env")
        assert isinstance(storage, S3Storage)
        await storage.put("aa/bb/env", generated_from(b"through the environment"))
        assert rclone.object_names(bucket, "") == ["from-env/aa/bb/env"]
        assert await read(storage, "aa/bb/env") == b"through the environment"
    finally:
        rclone.remove_bucket(bucket)


def test_part_size_below_the_s3_minimum_is_refused() -> None:
    with pytest.raises(ValueError, match="part_size must be between"):
        S3Storage("bucket", part_size=MIN_PART_SIZE - 1)


def test_parts_in_flight_comes_from_the_url_and_must_be_positive() -> None:
    assert S3Storage.from_url("s3://bucket?parts_in_flight=4").parts_in_flight == 4
    assert S3Storage.from_url("s3://bucket").parts_in_flight == 2
    with pytest.raises(ValueError, match="parts_in_flight must be at least 1"):
        S3Storage("bucket", parts_in_flight=0)


@pytest.mark.parametrize("key", ["../escape", "/etc/passwd", "aa/../x", "", "aa//bb", ".hidden"])
def test_keys_that_are_not_plain_relative_paths_are_refused(key: str) -> None:
    with pytest.raises(ValueError, match="invalid storage key"):
        S3Storage("bucket").object_name(key)


class SlowCommitProxy:
    """A TCP proxy to an S3 server that holds back each answer to a request completing a
    multipart upload (``POST ...?uploadId=...``) for ``delay`` seconds, as a service does
    while it assembles a large object. Clients send one request at a time per connection."""

    def __init__(self, upstream: str, delay: float) -> None:
        host_port = upstream.removeprefix("http://")
        self.upstream_host, port = host_port.rsplit(":", 1)
        self.upstream_port = int(port)
        self.delay = delay
        self.delayed = 0

    async def __aenter__(self) -> str:
        self.server = await asyncio.start_server(self._connection, "127.0.0.1", 0)
        port = self.server.sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}"

    async def __aexit__(self, *_: object) -> None:
        self.server.close()

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(self.upstream_host, self.upstream_port)
        hold = asyncio.Event()

        async def requests() -> None:
            while data := await reader.read(65536):
                first_line = data.split(b"\r\n", 1)[0]
                if first_line.startswith(b"POST ") and b"uploadId=" in first_line:
                    self.delayed += 1
                    hold.set()
                up_writer.write(data)
                await up_writer.drain()
            up_writer.close()

        async def answers() -> None:
            while data := await up_reader.read(65536):
                if hold.is_set():
                    await asyncio.sleep(self.delay)
                    hold.clear()
                writer.write(data)
                await writer.drain()
            writer.close()

        with contextlib.suppress(OSError):
            await asyncio.gather(requests(), answers())


async def test_a_commit_slower_than_the_read_timeout_completes_within_the_commit_timeout(
    moto: S3Server,
) -> None:
    bucket = moto.create_bucket()
    data = os.urandom(2 * MIN_PART_SIZE + 1000)
    try:
        proxy = SlowCommitProxy(moto.endpoint, delay=2.0)
        async with proxy as endpoint:
            storage = S3Storage(
                bucket,
                endpoint=endpoint,
                region=REGION,
                access_key_id=ACCESS_KEY,
                secret_access_key=SECRET_KEY,
                allow_http=True,
                part_size=MIN_PART_SIZE,
                read_timeout=1.0,
                commit_timeout=10.0,
            )
            blob = await storage.put("aa/bb/slow", generated_from(data))
            assert blob.size == len(data)
            assert proxy.delayed == 1  # the commit's answer came 2 s late, past read_timeout
            assert await read(storage, "aa/bb/slow") == data
            await storage.aclose()
    finally:
        moto.remove_bucket(bucket)
