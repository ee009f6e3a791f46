"""The Uploads API on S3: completion assembles the parts inside S3 (`S3Storage.compose`), so
no byte of the file passes through the process, and content checks (an ``md5``, JSONL rules)
read the parts once without writing them again.

"No byte passes through" is observed: the storage counts the bytes it reads and writes.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import AsyncIterable, AsyncIterator, Iterator

import anyio.to_thread
import pytest

from openai_files import FilesService, MemoryMetadataStore
from openai_files.errors import InvalidRequest
from openai_files.storage.base import ByteCounter
from openai_files.storage.s3 import MIN_PART_SIZE, S3Storage
from openai_files.testing import ManualClock

from ..s3_servers import S3Server

pytestmark = pytest.mark.anyio

MiB = 1024 * 1024
T0 = 1_750_000_000


class MeteredS3Storage(S3Storage):
    """`S3Storage` that counts the bytes it writes and reads through the process."""

    moved = 0

    async def _put(self, key: str, chunks: AsyncIterable[bytes], counter: ByteCounter) -> None:
        # Every put, hashed or not, stores through here.
        await super()._put(key, self._counted(chunks), counter)

    async def get(
        self, key: str, *, start: int = 0, end: int | None = None
    ) -> AsyncIterator[bytes]:
        return self._counted(await super().get(key, start=start, end=end))

    async def _counted(self, chunks: AsyncIterable[bytes]) -> AsyncIterator[bytes]:
        async for chunk in chunks:
            self.moved += len(chunk)
            yield chunk


@pytest.fixture
def bucket(moto: S3Server) -> Iterator[str]:
    name = moto.create_bucket()
    yield name
    moto.remove_bucket(name)


@pytest.fixture
async def service(moto: S3Server, bucket: str) -> AsyncIterator[FilesService]:
    from ..s3_servers import ACCESS_KEY, REGION, SECRET_KEY

    storage = MeteredS3Storage(
        bucket,
        prefix="files/",
        endpoint=moto.endpoint,
        region=REGION,
        access_key_id=ACCESS_KEY,
        secret_access_key=SECRET_KEY,
        allow_http=True,
    )
    async with FilesService(storage, MemoryMetadataStore(), clock=ManualClock(T0)) as service:
        yield service


async def chunks_of(data: bytes, size: int = 256 * 1024) -> AsyncIterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


async def uploaded_parts(
    service: FilesService, parts: list[bytes], *, purpose: str = "assistants"
) -> tuple[str, list[str]]:
    name = "data.jsonl" if purpose == "batch" else "data.bin"
    upload = await service.uploads.create(
        "alice",
        filename=name,
        purpose=purpose,
        bytes=sum(map(len, parts)),
        mime_type="application/jsonl",
    )
    ids = [(await service.uploads.add_part("alice", upload.id, chunks_of(p))).id for p in parts]
    return upload.id, ids


async def content(service: FilesService, file_id: str) -> bytes:
    opened = await service.content("alice", file_id)
    return b"".join([bytes(chunk) async for chunk in opened.chunks])


def objects(moto: S3Server, bucket: str) -> list[str]:
    return moto.object_names(bucket, "files/") + moto.upload_names(bucket, "files/")


async def test_complete_assembles_the_parts_inside_s3_in_the_order_named(
    service: FilesService, moto: S3Server, bucket: str
) -> None:
    parts = [os.urandom(MIN_PART_SIZE + 1), os.urandom(MIN_PART_SIZE), os.urandom(1000)]
    upload_id, ids = await uploaded_parts(service, parts)
    storage = service.storage
    assert isinstance(storage, MeteredS3Storage)
    moved_before = storage.moved

    done = await service.uploads.complete("alice", upload_id, part_ids=[ids[1], ids[0], ids[2]])

    assert storage.moved == moved_before  # S3 copied the parts; none passed through here
    assert done.file is not None
    assert await content(service, done.file.id) == parts[1] + parts[0] + parts[2]
    names = await anyio.to_thread.run_sync(objects, moto, bucket)
    assert len(names) == 1  # the file alone: the parts are gone, no upload is left open


async def test_an_md5_is_checked_by_reading_the_parts_once_without_writing_them(
    service: FilesService,
) -> None:
    parts = [os.urandom(MIN_PART_SIZE), os.urandom(2 * MiB)]
    upload_id, ids = await uploaded_parts(service, parts)
    storage = service.storage
    assert isinstance(storage, MeteredS3Storage)
    with pytest.raises(InvalidRequest, match="md5"):
        await service.uploads.complete("alice", upload_id, part_ids=ids, md5="0" * 32)
    moved_before = storage.moved
    md5 = hashlib.md5(b"".join(parts), usedforsecurity=False).hexdigest()

    done = await service.uploads.complete("alice", upload_id, part_ids=ids, md5=md5)

    assert storage.moved - moved_before == sum(map(len, parts))  # read once, written never
    assert done.file is not None
    assert await content(service, done.file.id) == b"".join(parts)


async def test_jsonl_parts_are_validated_and_assembled_inside_s3(service: FilesService) -> None:
    line = json.dumps(
        {"custom_id": "x", "method": "POST", "url": "/v1/chat/completions", "body": {}}
    )
    lines = [line.replace('"x"', f'"r{i}"' + " " * 60) for i in range(45_000)]
    data = ("\n".join(lines) + "\n").encode()
    cut = data.index(b"\n", MIN_PART_SIZE) + 1
    upload_id, ids = await uploaded_parts(service, [data[:cut], data[cut:]], purpose="batch")

    done = await service.uploads.complete("alice", upload_id, part_ids=ids)

    assert done.file is not None
    assert done.file.status == "processed"
    assert await content(service, done.file.id) == data
