"""The Uploads API on S3 with its parts sent into one multipart upload as they arrive
(`openai_files._upload_multipart`): completing in arrival order takes the multipart upload's
object as the file, moving no byte; any other order still assembles exactly; another replica
can complete; cancel, completion and expiry leave no multipart upload and no object behind.

Run against moto and ``rclone serve s3``, which completes only parts numbered without gaps:
there the storage has no multipart uploads across requests (`S3Storage.start_multipart`
finds out) and the parts are objects of their own, as before.

"No byte moves" is observed from the storage (the bytes it reads or writes through the
process, the part copies it asks for) and from the object (the file's key is
the multipart upload's, and its ETag counts the parts the stream was cut into).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import AsyncIterable, AsyncIterator
from pathlib import Path

import anyio
import anyio.to_thread
import pytest

from openai_files import FilesService, MemoryMetadataStore, SQLMetadataStore
from openai_files._upload_multipart import MAX_PART_NUMBERS
from openai_files.errors import InvalidRequest
from openai_files.metadata.base import MetadataStore
from openai_files.storage._s3_multipart import S3Multipart
from openai_files.storage.base import NumberedPut
from openai_files.storage.s3 import S3Storage
from openai_files.testing import ManualClock

from ..backends.test_s3_storage import bucket as bucket  # the fixtures: moto and rclone
from ..backends.test_s3_storage import server as server
from ..s3_servers import ACCESS_KEY, REGION, SECRET_KEY, UPLOAD_MARK, S3Server
from .test_uploads_on_s3 import MeteredS3Storage

pytestmark = pytest.mark.anyio

MiB = 1024 * 1024
T0 = 1_750_000_000


class CountingS3Storage(MeteredS3Storage):
    """`MeteredS3Storage` (the bytes read or written through the process outside of the parts
    it sends) that also counts the part copies it asks S3 for."""

    copies = 0

    async def put_numbered(
        self,
        key: str,
        upload_id: str,
        chunks: AsyncIterable[bytes],
        *,
        first: int,
        count: int,
        small_key: str,
    ) -> NumberedPut:
        if self._multipart is not None and not hasattr(self._multipart, "counted"):
            _count_copies(self, self._multipart)
        return await super().put_numbered(
            key, upload_id, chunks, first=first, count=count, small_key=small_key
        )


def _count_copies(storage: CountingS3Storage, client: S3Multipart) -> None:
    copy_part = client.copy_part

    async def counted(*args: object, **kwargs: object) -> str:
        storage.copies += 1
        return await copy_part(*args, **kwargs)  # type: ignore[arg-type]

    client.copy_part = counted  # type: ignore[method-assign]
    client.counted = True  # type: ignore[attr-defined]


def make_storage(server: S3Server, bucket: str) -> CountingS3Storage:
    return CountingS3Storage(
        bucket,
        prefix="files/",
        endpoint=server.endpoint,
        region=REGION,
        access_key_id=ACCESS_KEY,
        secret_access_key=SECRET_KEY,
        allow_http=True,
        part_size=5 * MiB,
        read_chunk_size=256 * 1024,
    )


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(T0)


@pytest.fixture
async def service(server: S3Server, bucket: str, clock: ManualClock) -> AsyncIterator[FilesService]:
    storage = make_storage(server, bucket)
    async with FilesService(storage, MemoryMetadataStore(), clock=clock) as service:
        yield service


def numbered(server: S3Server) -> bool:
    """Whether the server takes the parts of an upload into one multipart upload."""
    return server.name == "moto"


async def chunks_of(data: bytes, size: int = 256 * 1024) -> AsyncIterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


async def create(service: FilesService, size: int, *, purpose: str = "assistants") -> str:
    name = "data.jsonl" if purpose == "batch" else "data.bin"
    upload = await service.uploads.create(
        "alice", filename=name, purpose=purpose, bytes=size, mime_type="application/jsonl"
    )
    return upload.id


async def add(service: FilesService, upload_id: str, data: bytes) -> str:
    return (await service.uploads.add_part("alice", upload_id, chunks_of(data))).id


async def content(service: FilesService, file_id: str) -> bytes:
    opened = await service.content("alice", file_id)
    return b"".join([bytes(chunk) async for chunk in opened.chunks])


def storage_of(service: FilesService) -> CountingS3Storage:
    storage = service.storage
    assert isinstance(storage, CountingS3Storage)
    return storage


async def leftovers(server: S3Server, storage: S3Storage) -> list[str]:
    return await anyio.to_thread.run_sync(server.leftovers, storage)


async def file_key(metadata: MetadataStore, file_id: str) -> str:
    record = await metadata.get("alice", file_id, now=T0)
    assert record is not None
    return record.storage_key


async def test_in_order_parts_complete_into_the_file_without_moving_a_byte(
    service: FilesService, server: S3Server
) -> None:
    # Parts of 11 MiB are cut into parts of 5 and 6 MiB; the small last one is an object.
    parts = [os.urandom(11 * MiB), os.urandom(11 * MiB), os.urandom(3 * MiB)]
    upload_id = await create(service, sum(map(len, parts)))
    ids = [await add(service, upload_id, part) for part in parts]
    storage = storage_of(service)
    upload = await service.metadata.get_upload("alice", upload_id)
    assert upload is not None
    if not numbered(server):
        assert upload.multipart is None
        return
    assert upload.multipart is not None
    assert await leftovers(server, storage) == [
        UPLOAD_MARK + storage.object_name(upload.multipart.split()[0]),
        f"uploads/{upload_id}/{ids[2]}.part-{upload.part_numbers}",  # the small one
    ]
    moved = storage.moved

    done = await service.uploads.complete("alice", upload_id, part_ids=ids)

    assert done.file is not None
    # Nothing was written or read back (only the small last part's object is read, once, to
    # be sent as the last part, outside `get`).
    assert storage.moved == moved
    assert storage.copies == 0
    key = await file_key(service.metadata, done.file.id)
    assert key == upload.multipart.split()[0]  # the multipart upload's object is the file
    if server.name == "moto":  # moto's ETags count the parts: 2 + 2 + 1
        etag = server.client.head_object(Bucket=storage.bucket, Key=storage.object_name(key))
        assert etag["ETag"].strip('"').endswith("-5")
    assert await content(service, done.file.id) == b"".join(parts)
    assert await leftovers(server, storage) == [key]


async def test_any_other_order_assembles_exactly_and_leaves_nothing_behind(
    service: FilesService, server: S3Server
) -> None:
    # A small part in the middle: the parts are read through once (S3 copies no part that
    # small unless it is the last).
    parts = [os.urandom(6 * MiB), os.urandom(2 * MiB), os.urandom(7 * MiB), os.urandom(100)]
    upload_id = await create(service, sum(map(len, parts)))
    ids = [await add(service, upload_id, part) for part in parts]
    order = [2, 1, 0, 3]
    storage = storage_of(service)

    done = await service.uploads.complete("alice", upload_id, part_ids=[ids[i] for i in order])

    assert done.file is not None
    assert await content(service, done.file.id) == b"".join(parts[i] for i in order)
    key = await file_key(service.metadata, done.file.id)
    assert await leftovers(server, storage) == [key]


async def test_another_order_of_large_parts_is_copied_inside_s3(
    service: FilesService, server: S3Server
) -> None:
    parts = [os.urandom(6 * MiB), os.urandom(7 * MiB), os.urandom(100)]
    upload_id = await create(service, sum(map(len, parts)))
    ids = [await add(service, upload_id, part) for part in parts]
    order = [1, 0, 2]
    storage = storage_of(service)
    moved = storage.moved

    done = await service.uploads.complete("alice", upload_id, part_ids=[ids[i] for i in order])

    assert done.file is not None
    if numbered(server):  # three ranges of the completed multipart upload's object
        assert storage.copies == 3
        assert storage.moved == moved
    assert await content(service, done.file.id) == b"".join(parts[i] for i in order)
    assert await leftovers(server, storage) == [await file_key(service.metadata, done.file.id)]


async def test_parts_sent_at_once_claim_numbers_of_their_own(
    service: FilesService, server: S3Server
) -> None:
    parts = [os.urandom(6 * MiB + index) for index in range(4)]
    upload_id = await create(service, sum(map(len, parts)))
    ids: dict[int, str] = {}

    async def send(index: int) -> None:
        ids[index] = await add(service, upload_id, parts[index])

    async with anyio.create_task_group() as group:
        for index in range(4):
            group.start_soon(send, index)
    records = await service.metadata.get_parts("alice", upload_id)
    blocks = [part.storage_key.rpartition(".parts-")[2] for part in records]
    assert len(set(blocks)) == 4

    done = await service.uploads.complete("alice", upload_id, part_ids=[ids[i] for i in range(4)])

    assert done.file is not None
    assert await content(service, done.file.id) == b"".join(parts)
    assert await leftovers(server, storage_of(service)) == [
        await file_key(service.metadata, done.file.id)
    ]


async def test_cancel_aborts_the_multipart_upload(service: FilesService, server: S3Server) -> None:
    upload_id = await create(service, 20 * MiB)
    await add(service, upload_id, os.urandom(6 * MiB))
    await add(service, upload_id, os.urandom(1 * MiB))
    storage = storage_of(service)
    started = any(name.startswith(UPLOAD_MARK) for name in await leftovers(server, storage))
    assert started == numbered(server)

    await service.uploads.cancel("alice", upload_id)

    assert await leftovers(server, storage) == []


async def test_expiry_aborts_the_multipart_upload(
    service: FilesService, server: S3Server, clock: ManualClock
) -> None:
    upload_id = await create(service, 20 * MiB)
    await add(service, upload_id, os.urandom(6 * MiB))
    clock.advance(2 * 3600)

    assert await service.uploads.sweep() == 1

    assert await leftovers(server, storage_of(service)) == []


async def test_a_refused_completion_can_be_completed_again(
    service: FilesService, server: S3Server
) -> None:
    # A wrong md5 is found after the multipart upload was completed into its object: the
    # object stays, as the parts' bytes, and the next completion takes it.
    parts = [os.urandom(6 * MiB), os.urandom(1000)]
    upload_id = await create(service, sum(map(len, parts)))
    ids = [await add(service, upload_id, part) for part in parts]
    whole = b"".join(parts)

    with pytest.raises(InvalidRequest, match="md5"):
        await service.uploads.complete("alice", upload_id, part_ids=ids, md5="0" * 32)
    done = await service.uploads.complete(
        "alice", upload_id, part_ids=ids, md5=hashlib.md5(whole).hexdigest()
    )

    assert done.file is not None
    assert await content(service, done.file.id) == whole
    assert await leftovers(server, storage_of(service)) == [
        await file_key(service.metadata, done.file.id)
    ]


async def test_a_refused_completion_stops_the_numbering_of_parts(
    service: FilesService, server: S3Server
) -> None:
    # After the multipart upload was completed into its object, it takes no more parts: a
    # part sent later (the upload is pending again) must be an object of its own.
    parts = [os.urandom(6 * MiB), os.urandom(100)]
    upload_id = await create(service, sum(map(len, parts)))
    ids = [await add(service, upload_id, part) for part in parts]

    with pytest.raises(InvalidRequest, match="md5"):
        await service.uploads.complete("alice", upload_id, part_ids=ids, md5="0" * 32)

    upload = await service.metadata.get_upload("alice", upload_id)
    assert upload is not None
    assert upload.state == "pending"
    if numbered(server):
        assert upload.part_numbers == MAX_PART_NUMBERS
    assert (
        await service.metadata.claim_part_numbers(
            "alice", upload_id, 1, multipart="k a", limit=MAX_PART_NUMBERS
        )
        is None
    ) == numbered(server)


async def test_another_replica_completes_the_upload(
    server: S3Server, bucket: str, tmp_path: Path
) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'files.db'}"
    parts = [os.urandom(6 * MiB), os.urandom(6 * MiB)]
    async with (
        FilesService(make_storage(server, bucket), SQLMetadataStore(url)) as one,
        FilesService(make_storage(server, bucket), SQLMetadataStore(url)) as two,
    ):
        upload_id = await create(one, sum(map(len, parts)))
        first = await add(one, upload_id, parts[0])
        second = await add(two, upload_id, parts[1])

        done = await two.uploads.complete("alice", upload_id, part_ids=[first, second])

        assert done.file is not None
        if numbered(server):
            assert storage_of(two).moved == 0
        assert await content(one, done.file.id) == b"".join(parts)
        assert await leftovers(server, storage_of(one)) == [
            await file_key(one.metadata, done.file.id)
        ]
