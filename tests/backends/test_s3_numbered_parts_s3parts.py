"""`S3Storage` as a `MultipartStorage`: streams sent as numbered parts of one multipart
upload (in bounded memory), completed with the parts named, and aborted; and the probe that
finds servers which complete only parts numbered without gaps (``rclone serve s3``)."""

from __future__ import annotations

import hashlib
import os
import tracemalloc
from collections.abc import AsyncIterator

import anyio.to_thread
import pytest

from openai_files import BlobNotFound
from openai_files.storage.base import MultipartStorage, NumberedSource
from openai_files.storage.s3 import MIN_PART_SIZE, S3Storage

from ..s3_servers import S3Server
from .test_s3_storage import bucket as bucket  # the fixtures: moto and rclone
from .test_s3_storage import generated, read
from .test_s3_storage import server as server

pytestmark = pytest.mark.anyio

MIB = 1024 * 1024
PART = MIN_PART_SIZE  # the storage's part_size here


@pytest.fixture
async def storage(server: S3Server, bucket: str) -> AsyncIterator[S3Storage]:
    storage = server.storage(bucket, prefix="files/", part_size=PART)
    yield storage
    await storage.aclose()


async def test_a_stream_goes_up_as_numbered_parts_in_bounded_memory(
    server: S3Server, storage: S3Storage
) -> None:
    assert isinstance(storage, MultipartStorage)
    multipart = await storage._multipart.create(storage.object_name("aa/bb/whole"))  # type: ignore[union-attr]
    total = 40 * MIB + 123
    sent = hashlib.sha256()
    tracemalloc.start()
    try:
        put = await storage.put_numbered(
            "aa/bb/whole",
            multipart,
            generated(total, 256 * 1024, sent.update),
            first=1,
            count=storage.numbers_for(total),
            small_key="aa/bb/small",
        )
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # Two parts in flight, one waiting for its turn, and the next filling (up to a part and
    # S3's smallest part more, so that the last part is never too small).
    assert peak < 4 * PART + MIN_PART_SIZE, f"held {peak / MIB:.1f} MiB at its peak"
    assert (put.blob.size, put.blob.sha256) == (total, sent.hexdigest())
    assert put.last == 8  # 7 parts of 5 MiB, then 5 MiB and 123 bytes
    size = await storage.complete_multipart(
        "aa/bb/whole", multipart, [NumberedSource(1, put.last, total)]
    )
    assert size == total
    whole = await read(storage, "aa/bb/whole")
    assert hashlib.sha256(whole).hexdigest() == sent.hexdigest()
    # Completed already: its object's size.
    assert await storage.complete_multipart("aa/bb/whole", multipart, []) == total


async def test_a_stream_under_a_part_is_an_object_and_the_upload_can_be_aborted(
    server: S3Server, storage: S3Storage
) -> None:
    name = storage.object_name("aa/bb/whole")
    multipart = await storage._multipart.create(name)  # type: ignore[union-attr]
    data = os.urandom(MIN_PART_SIZE - 1)

    async def chunks() -> AsyncIterator[bytes]:
        yield data

    put = await storage.put_numbered(
        "aa/bb/whole", multipart, chunks(), first=1, count=1, small_key="aa/bb/small"
    )

    assert put.last is None
    assert await read(storage, "aa/bb/small") == data
    await storage.abort_multipart("aa/bb/whole", multipart)
    await storage.abort_multipart("aa/bb/whole", multipart)  # gone: a no-op
    assert await anyio.to_thread.run_sync(server.upload_names, storage.bucket, "files/") == []
    with pytest.raises(BlobNotFound):
        await storage.complete_multipart(
            "aa/bb/whole", multipart, [NumberedSource(1, 1, len(data))]
        )


async def test_only_servers_that_take_gaps_in_part_numbers_start_multipart_uploads(
    server: S3Server, storage: S3Storage
) -> None:
    started = await storage.start_multipart("aa/bb/whole")

    assert (started is not None) == (server.name == "moto")  # rclone completes no gaps
    # The probe left nothing: no object, and only the upload just started.
    assert await anyio.to_thread.run_sync(server.object_names, storage.bucket, "files/") == []
    uploads = await anyio.to_thread.run_sync(server.upload_names, storage.bucket, "files/")
    assert uploads == (["files/aa/bb/whole"] if started else [])
