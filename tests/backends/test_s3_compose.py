"""`S3Storage.compose` inside S3 (``UploadPartCopy`` into one multipart upload), its fallback
where S3 cannot copy, the SigV4 signing it relies on, and `remove_partials`.

Whether the bytes were copied inside S3 or streamed through the process is read from the
object's ETag: a multipart ETag ends with the number of its parts, one per source when S3
copied them, one per ``part_size`` when they were streamed into a put.
"""

from __future__ import annotations

import os
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import anyio
import anyio.to_thread
import botocore.auth
import pytest
from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials as BotoCredentials

from openai_files import BlobNotFound
from openai_files.storage._s3_config import S3Bucket
from openai_files.storage._s3_multipart import (
    MAX_PART_SIZE,
    MIN_PART_SIZE,
    S3Multipart,
    S3RequestError,
    assemble,
    multipart_client,
    plan_copies,
)
from openai_files.storage._sigv4 import Credentials, sign
from openai_files.storage.s3 import S3Storage

from ..s3_servers import UPLOAD_MARK, S3Server
from .test_s3_storage import bucket as bucket  # the fixtures: moto and rclone
from .test_s3_storage import server as server

pytestmark = pytest.mark.anyio

MIB = 1024 * 1024
PART = 8 * MIB  # the storage's part_size here: streamed sources show as parts of 8 MiB


@pytest.fixture
async def storage(server: S3Server, bucket: str) -> AsyncIterator[S3Storage]:
    storage = server.storage(bucket, prefix="files/", part_size=PART)
    yield storage
    await storage.aclose()


async def chunked(data: bytes) -> AsyncIterator[bytes]:
    for offset in range(0, len(data), MIB):
        yield data[offset : offset + MIB]


async def read(storage: S3Storage, key: str) -> bytes:
    return b"".join([bytes(chunk) async for chunk in await storage.get(key)])


async def stored(storage: S3Storage, sources: dict[str, bytes]) -> None:
    for key, data in sources.items():
        await storage.put(key, chunked(data))


def part_count(server: S3Server, storage: S3Storage, key: str) -> int:
    """How many parts the multipart object ``key`` was completed from (moto's ETags say;
    rclone's are the MD5 of the whole object)."""
    etag = server.client.head_object(Bucket=storage.bucket, Key=storage.object_name(key))["ETag"]
    count = etag.strip('"').partition("-")[2]
    return int(count or 1)


async def leftovers(server: S3Server, storage: S3Storage) -> list[str]:
    return await anyio.to_thread.run_sync(server.leftovers, storage)


async def test_sources_of_at_least_5_mib_are_copied_inside_s3_where_the_server_can(
    server: S3Server, storage: S3Storage
) -> None:
    sources = {
        "up/one": os.urandom(MIN_PART_SIZE),
        "up/two": os.urandom(MIN_PART_SIZE + 3),
        "up/three": os.urandom(6 * MIB),
        "up/tail": b"the last part may be small",
    }
    await stored(storage, sources)
    order = ["up/three", "up/one", "up/two", "up/tail"]
    whole = b"".join(sources[key] for key in order)
    assert await storage.compose("aa/bb/whole", order) == len(whole)
    assert await read(storage, "aa/bb/whole") == whole
    if server.name == "moto":
        parts = await anyio.to_thread.run_sync(part_count, server, storage, "aa/bb/whole")
        assert parts == 4  # one copy per source: no byte passed through this process
        assert storage._copies_parts
    else:
        # rclone serve s3 takes an UploadPartCopy for an UploadPart of no bytes: the storage
        # notices the missing ETag, aborts, and streams the sources instead, from then on.
        assert not storage._copies_parts
    for key, data in sources.items():
        assert await read(storage, key) == data
    assert sorted(await leftovers(server, storage)) == sorted([*sources, "aa/bb/whole"])


async def test_a_small_source_before_the_last_makes_the_sources_stream_through(
    server: S3Server, storage: S3Storage
) -> None:
    sources = {"up/big": os.urandom(6 * MIB), "up/small": os.urandom(MIB), "up/end": b"end"}
    await stored(storage, sources)
    order = ["up/small", "up/big", "up/end"]
    whole = b"".join(sources[key] for key in order)
    assert await storage.compose("aa/bb/whole", order) == len(whole)
    assert await read(storage, "aa/bb/whole") == whole
    parts = await anyio.to_thread.run_sync(part_count, server, storage, "aa/bb/whole")
    assert parts == 1  # one put of 7 MiB: no multipart upload of copies was tried
    assert sorted(await leftovers(server, storage)) == sorted([*sources, "aa/bb/whole"])


async def test_a_missing_source_is_blob_not_found_and_leaves_nothing(
    server: S3Server, storage: S3Storage
) -> None:
    await stored(storage, {"up/big": os.urandom(6 * MIB)})
    with pytest.raises(BlobNotFound):
        await storage.compose("aa/bb/never", ["up/big", "up/missing"])
    assert await leftovers(server, storage) == ["up/big"]


async def test_a_copy_that_fails_aborts_its_multipart_upload(
    moto: S3Server, storage_on_moto: S3Storage
) -> None:
    storage = storage_on_moto
    await stored(storage, {"up/big": os.urandom(6 * MIB)})
    client = storage._multipart
    assert client is not None
    pieces = plan_copies(
        [storage.object_name("up/big"), storage.object_name("up/gone")], [6 * MIB, 10]
    )
    assert pieces is not None
    with pytest.raises(S3RequestError) as failure:
        await assemble(client, storage.object_name("aa/bb/never"), pieces, in_flight=2)
    assert failure.value.code == "NoSuchKey"
    assert await leftovers(moto, storage) == ["up/big"]  # no incomplete upload either


@pytest.fixture
async def storage_on_moto(moto: S3Server) -> AsyncIterator[S3Storage]:
    bucket = moto.create_bucket()
    storage = moto.storage(bucket, prefix="files/", part_size=PART)
    yield storage
    await storage.aclose()
    moto.remove_bucket(bucket)


async def test_remove_partials_aborts_incomplete_uploads_started_before_the_cutoff(
    server: S3Server, storage: S3Storage
) -> None:
    name = storage.object_name("aa/bb/dead")
    await anyio.to_thread.run_sync(
        lambda: server.client.create_multipart_upload(Bucket=storage.bucket, Key=name)
    )
    if server.name == "rclone":  # moto dates every upload 2010-11-10
        assert await storage.remove_partials(modified_before=time.time() - 3600) == 0
        assert await leftovers(server, storage) == [f"{UPLOAD_MARK}files/aa/bb/dead"]
    assert await storage.remove_partials(modified_before=time.time() + 60) == 1
    assert await leftovers(server, storage) == []


def test_plan_copies_needs_every_source_but_the_last_to_be_a_whole_part() -> None:
    five = MIN_PART_SIZE
    assert plan_copies(["a", "b"], [five - 1, five]) is None
    assert plan_copies(["a", "b"], [0, 0]) is None
    pieces = plan_copies(["a", "e", "b"], [five, 0, 1])
    assert pieces is not None
    assert [(p.source, p.start, p.end, p.whole) for p in pieces] == [
        ("a", 0, five, True),
        ("b", 0, 1, True),
    ]


def test_plan_copies_splits_a_source_over_5_gib_into_even_ranges() -> None:
    size = MAX_PART_SIZE + 1
    pieces = plan_copies(["huge"], [size])
    assert pieces is not None
    assert [(p.start, p.end, p.whole) for p in pieces] == [
        (0, size // 2 + 1, False),
        (size // 2 + 1, size, False),
    ]
    assert plan_copies(["a"] * 10_001, [MIN_PART_SIZE] * 10_001) is None


def test_the_signature_is_the_one_botocore_computes(monkeypatch: pytest.MonkeyPatch) -> None:
    now = datetime(2026, 12, 5, 12, 30, 45, tzinfo=UTC)
    monkeypatch.setattr(botocore.auth, "get_current_datetime", lambda: now.replace(tzinfo=None))
    credentials = Credentials("AKIDEXAMPLE", "secret/with+chars", "a-session-token")
    query = {"partNumber": "3", "uploadId": "abc+/=def"}
    headers = {"x-amz-copy-source": "/bucket/files/up%20one", "content-type": "application/xml"}
    body = b"<CompleteMultipartUpload/>"
    ours = sign(
        credentials,
        region="eu-west-3",
        method="PUT",
        host="127.0.0.1:9000",
        path="/bucket/files/aa%20bb/whole",
        query=query,
        headers=headers,
        body=body,
        now=now,
    )
    request = AWSRequest(
        method="PUT",
        url="http://127.0.0.1:9000/bucket/files/aa%20bb/whole?partNumber=3&uploadId=abc%2B%2F%3Ddef",
        headers=headers,
        data=body,
    )
    auth = S3SigV4Auth(
        BotoCredentials("AKIDEXAMPLE", "secret/with+chars", "a-session-token"), "s3", "eu-west-3"
    )
    auth.add_auth(request)
    theirs = request.headers["Authorization"]
    assert ours["authorization"] == theirs


def client_for(access_key_id: str | None, secret_access_key: str | None) -> S3Multipart | None:
    bucket = S3Bucket("bucket", access_key_id=access_key_id, secret_access_key=secret_access_key)
    return multipart_client(bucket, connect_timeout=1.0, read_timeout=1.0)


async def test_without_static_credentials_the_storage_does_not_sign_requests(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    assert client_for(None, None) is None
    client = client_for("key", "secret")
    assert client is not None
    await client.aclose()
    monkeypatch.setenv("AWS_VIRTUAL_HOSTED_STYLE_REQUEST", "true")
    assert client_for("key", "secret") is None


def test_the_buckets_settings_never_show_its_secrets() -> None:
    bucket = S3Bucket(
        "bucket", access_key_id="key-id", secret_access_key="s3cr3t", session_token="t0k3n"
    )
    shown = repr(bucket)
    assert "bucket" in shown
    assert "key-id" in shown
    assert "s3cr3t" not in shown
    assert "t0k3n" not in shown
