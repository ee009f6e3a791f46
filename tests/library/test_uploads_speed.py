"""The Uploads API at full speed: parts sent in order on local disk are appended to one file,
which completion seals into the uploaded file without moving a byte.

"Without moving a byte" is observed, not timed: the storage counts the bytes that pass through
it while an upload completes, and the file that comes out is the very file (the same inode)
the parts were written to. Parts that arrive out of order or concurrently, parts that fail
midway, cancellation and expiry keep working, with every byte where it belongs.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import AsyncIterable, AsyncIterator, Iterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path

import anyio
import httpx
import pytest

from openai_files import FilesService, LocalStorage, MetadataStore, Policy, SQLMetadataStore
from openai_files.errors import BackendUnavailable, InvalidRequest
from openai_files.http import create_app
from openai_files.http.auth import api_key_auth
from openai_files.storage.base import ObjectRange, StoredBlob, UnfinishedRange
from openai_files.storage.local import UNFINISHED_SUFFIX
from openai_files.testing import FaultyMetadataStore, FaultyStorage, ManualClock

from ..databases import drop_tables, require_database, unique_prefix
from ..support import serve, stored_files

pytestmark = pytest.mark.anyio

MiB = 1024 * 1024
KEYS = {"sk-alice": "alice"}
ALICE = {"Authorization": "Bearer sk-alice"}
T0 = 1_750_000_000


class MeteredStorage(LocalStorage):
    """`LocalStorage` that counts the bytes it reads and writes, whichever way (streamed
    through the event loop, or copied inside the storage by `compose`)."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.moved = 0
        self.composed: list[list[str | ObjectRange | UnfinishedRange]] = []

    async def put(self, key: str, chunks: AsyncIterable[bytes]) -> StoredBlob:
        blob = await super().put(key, chunks)
        self.moved += blob.size
        return blob

    async def get(
        self, key: str, *, start: int = 0, end: int | None = None
    ) -> AsyncIterator[bytes]:
        return self._counted(await super().get(key, start=start, end=end))

    async def get_unfinished(
        self, key: str, *, start: int = 0, end: int | None = None
    ) -> AsyncIterator[bytes]:
        return self._counted(await super().get_unfinished(key, start=start, end=end))

    async def compose(
        self, key: str, sources: Sequence[str | ObjectRange | UnfinishedRange]
    ) -> int:
        self.composed.append(list(sources))
        size = await super().compose(key, sources)
        self.moved += size
        return size

    async def _counted(self, chunks: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
        async for chunk in chunks:
            self.moved += len(chunk)
            yield chunk


def appended_file(storage: LocalStorage, upload_id: str) -> Path:
    return storage.root / "uploads" / upload_id / f".appended{UNFINISHED_SUFFIX}"


async def read_file(service: FilesService, file_id: str) -> bytes:
    content = await service.content("alice", file_id)
    return b"".join([chunk async for chunk in content.chunks])


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


async def chunks_of(data: bytes, size: int = 64 * 1024) -> AsyncIterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


@asynccontextmanager
async def service_over(
    storage: LocalStorage | FaultyStorage,
    metadata: MetadataStore,
    clock: ManualClock | None = None,
) -> AsyncIterator[FilesService]:
    async with FilesService(storage, metadata, clock=clock or ManualClock(T0)) as service:
        yield service


async def stored_key(service: FilesService, file_id: str) -> str:
    record = await service.metadata.get("alice", file_id, now=T0)
    assert record is not None
    return record.storage_key


# -- in order: sealed, no byte moved, every SQL backend, through a real server ----------------


@pytest.fixture(params=["sqlite", "postgresql", "mariadb"])
def metadata_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, str]]:
    """A database URL and a table prefix for one test, its tables dropped afterwards."""
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'files.db'}", ""
        return
    url = require_database(request.param)
    prefix = unique_prefix()
    yield url, prefix
    anyio.run(drop_tables, url, prefix)


def test_parts_sent_in_order_become_the_file_without_moving_a_byte(
    tmp_path: Path, metadata_url: tuple[str, str]
) -> None:
    url, prefix = metadata_url
    storage = MeteredStorage(tmp_path / "blobs")
    service = FilesService(storage, SQLMetadataStore(url, table_prefix=prefix))
    app = create_app(service, auth=api_key_auth(KEYS), close_service=True)
    parts = [os.urandom(MiB), os.urandom(MiB), os.urandom(MiB), os.urandom(12_345)]
    data = b"".join(parts)
    with serve(app) as server, httpx.Client(base_url=server.url, headers=ALICE) as http:
        created = http.post(
            "/v1/uploads",
            json={
                "filename": "data.bin",
                "purpose": "assistants",
                "bytes": len(data),
                "mime_type": "application/octet-stream",
            },
        )
        upload_id = created.json()["id"]
        part_ids = []
        for part in parts:
            response = http.post(f"/v1/uploads/{upload_id}/parts", files={"data": part})
            assert response.status_code == 200, response.text
            part_ids.append(response.json()["id"])
        appended = appended_file(storage, upload_id)
        assert appended.stat().st_size == len(data)
        inode = appended.stat().st_ino
        moved_before = storage.moved

        done = http.post(f"/v1/uploads/{upload_id}/complete", json={"part_ids": part_ids})

        assert done.status_code == 200, done.text
        assert storage.moved == moved_before  # not a byte read or written to complete it
        assert storage.composed == []
        file = done.json()["file"]
        [stored] = stored_files(storage.root)  # the appended file went with the parts
        assert (storage.root / stored).stat().st_ino == inode  # the file the parts went to
        content = http.get(f"/v1/files/{file['id']}/content")
        assert sha256(content.content) == sha256(data)
        assert file["bytes"] == len(data)


async def test_appended_parts_are_recorded_with_their_bytes_digests_and_places(
    tmp_path: Path, metadata_url: tuple[str, str]
) -> None:
    url, prefix = metadata_url
    storage = MeteredStorage(tmp_path / "blobs")
    metadata = SQLMetadataStore(url, table_prefix=prefix)
    policy = Policy(quota=None)
    parts = [os.urandom(300_000), os.urandom(5), os.urandom(70_000)]
    async with FilesService(storage, metadata, policy=policy, clock=ManualClock(T0)) as service:
        upload = await service.uploads.create(
            "alice", filename="a.bin", purpose="assistants", bytes=400_000, mime_type="a/b"
        )
        ids = [(await service.uploads.add_part("alice", upload.id, chunks_of(p))).id for p in parts]
        records = {p.id: p for p in await metadata.get_parts("alice", upload.id)}
        offset = 0
        for part_id, data in zip(ids, parts, strict=True):
            record = records[part_id]
            assert (record.bytes, record.sha256) == (len(data), sha256(data))
            assert record.storage_key == f"uploads/{upload.id}/appended.{offset}"
            offset += len(data)
        stored = await metadata.get_upload("alice", upload.id)
        assert stored is not None
        assert (stored.received, stored.part_count) == (offset, 3)
        assert (await metadata.usage("alice")).bytes == offset


async def test_a_512_mib_upload_completes_without_reading_or_writing_its_bytes(
    tmp_path: Path,
) -> None:
    """The completion time does not grow with the size: the bytes it moves do not."""
    storage = MeteredStorage(tmp_path / "blobs")
    block = os.urandom(MiB)

    async def part_body(index: int) -> AsyncIterator[bytes]:
        for _ in range(64):
            yield bytes([index]) + block[1:]

    expected = hashlib.sha256()
    for index in range(8):
        for _ in range(64):
            expected.update(bytes([index]) + block[1:])
    async with service_over(storage, SQLMetadataStore(f"sqlite+aiosqlite:///{tmp_path}/f.db")) as s:
        upload = await s.uploads.create(
            "alice", filename="big.bin", purpose="assistants", bytes=512 * MiB, mime_type="a/b"
        )
        ids = [(await s.uploads.add_part("alice", upload.id, part_body(i))).id for i in range(8)]
        inode = appended_file(storage, upload.id).stat().st_ino
        moved_before = storage.moved

        done = await s.uploads.complete("alice", upload.id, part_ids=ids)

        assert storage.moved == moved_before
        assert done.file is not None
        path = storage.path_for(await stored_key(s, done.file.id))
        assert path.stat().st_ino == inode
        digest = hashlib.sha256()
        with path.open("rb") as stored:
            while chunk := stored.read(8 * MiB):
                digest.update(chunk)
        assert digest.hexdigest() == expected.hexdigest()
        assert stored_files(storage.root) == [path.relative_to(storage.root).as_posix()]


# -- out of order, concurrent: assembled exactly ------------------------------------------------


async def test_parts_completed_in_another_order_are_composed_exactly(tmp_path: Path) -> None:
    storage = MeteredStorage(tmp_path / "blobs")
    parts = [os.urandom(size) for size in (200_000, 1, 65_536, 7)]
    order = [2, 0, 3, 1]
    async with service_over(storage, SQLMetadataStore(f"sqlite+aiosqlite:///{tmp_path}/f.db")) as s:
        upload = await s.uploads.create(
            "alice", filename="a.bin", purpose="assistants", bytes=265_544, mime_type="a/b"
        )
        ids = [(await s.uploads.add_part("alice", upload.id, chunks_of(p))).id for p in parts]

        done = await s.uploads.complete("alice", upload.id, part_ids=[ids[i] for i in order])

        assert done.file is not None
        content = await read_file(s, done.file.id)
        assert sha256(content) == sha256(b"".join(parts[i] for i in order))
        # Assembled inside the storage from ranges of the appended file, none read by Python.
        assert len(storage.composed) == 1
        assert all(isinstance(source, UnfinishedRange) for source in storage.composed[0])
        assert stored_files(storage.root) == [
            storage.path_for(await stored_key(s, done.file.id)).relative_to(storage.root).as_posix()
        ]


async def test_a_part_sent_while_another_is_appended_is_stored_apart_and_assembled_exactly(
    tmp_path: Path,
) -> None:
    storage = MeteredStorage(tmp_path / "blobs")
    first, second, third = os.urandom(100_000), os.urandom(50_000), os.urandom(30_000)
    halfway, release = anyio.Event(), anyio.Event()

    async def slow_first() -> AsyncIterator[bytes]:
        yield first[:50_000]
        halfway.set()
        await release.wait()
        yield first[50_000:]

    async with service_over(storage, SQLMetadataStore(f"sqlite+aiosqlite:///{tmp_path}/f.db")) as s:
        upload = await s.uploads.create(
            "alice", filename="a.bin", purpose="assistants", bytes=180_000, mime_type="a/b"
        )
        ids: dict[str, str] = {}

        async def send(name: str, body: AsyncIterable[bytes]) -> None:
            ids[name] = (await s.uploads.add_part("alice", upload.id, body)).id

        async with anyio.create_task_group() as group:
            group.start_soon(send, "first", slow_first())
            await halfway.wait()
            await send("second", chunks_of(second))  # the first one holds the appended file
            release.set()
        await send("third", chunks_of(third))  # does not continue the appended file's bytes

        keys = {p.id: p.storage_key for p in await s.metadata.get_parts("alice", upload.id)}
        assert keys[ids["first"]] == f"uploads/{upload.id}/appended.0"
        assert keys[ids["second"]] == f"uploads/{upload.id}/{ids['second']}"
        assert keys[ids["third"]] == f"uploads/{upload.id}/{ids['third']}"

        order = [ids["second"], ids["first"], ids["third"]]
        done = await s.uploads.complete("alice", upload.id, part_ids=order)

        assert done.file is not None
        content = await read_file(s, done.file.id)
        assert sha256(content) == sha256(second + first + third)
        assert len(stored_files(storage.root)) == 1


# -- failures -------------------------------------------------------------------------------------


class BrokenBody(Exception):
    pass


async def breaks_after(data: bytes, count: int) -> AsyncIterator[bytes]:
    async for chunk in chunks_of(data, 10_000):
        yield chunk
        count -= len(chunk)
        if count <= 0:
            raise BrokenBody


@pytest.mark.parametrize("failure", ["the body breaks", "the disk fails"])
async def test_a_part_that_fails_midway_leaves_the_upload_completable(
    tmp_path: Path, failure: str
) -> None:
    local = MeteredStorage(tmp_path / "blobs")
    storage = FaultyStorage(local)
    parts = [os.urandom(100_000), os.urandom(100_000), os.urandom(60_000)]
    async with service_over(storage, SQLMetadataStore(f"sqlite+aiosqlite:///{tmp_path}/f.db")) as s:
        upload = await s.uploads.create(
            "alice", filename="a.bin", purpose="assistants", bytes=260_000, mime_type="a/b"
        )
        ids = [(await s.uploads.add_part("alice", upload.id, chunks_of(p))).id for p in parts[:2]]
        appended = appended_file(local, upload.id)
        if failure == "the body breaks":
            with pytest.raises(BrokenBody):
                await s.uploads.add_part("alice", upload.id, breaks_after(parts[2], 30_000))
        else:
            storage.fail_put_at_chunk = 3
            with pytest.raises(BackendUnavailable):
                await s.uploads.add_part("alice", upload.id, chunks_of(parts[2], 10_000))
            storage.fail_put_at_chunk = None
        assert appended.stat().st_size == 200_000  # cut back to the good parts
        stored = await s.metadata.get_upload("alice", upload.id)
        assert stored is not None
        assert (stored.received, stored.reserved) == (200_000, 200_000)

        ids.append((await s.uploads.add_part("alice", upload.id, chunks_of(parts[2]))).id)
        inode, moved = appended.stat().st_ino, local.moved
        done = await s.uploads.complete("alice", upload.id, part_ids=ids)

        assert done.file is not None
        assert local.moved == moved
        path = local.path_for(await stored_key(s, done.file.id))
        assert path.stat().st_ino == inode
        assert sha256(path.read_bytes()) == sha256(b"".join(parts))


async def test_a_wrong_md5_keeps_the_appended_parts_for_another_try(tmp_path: Path) -> None:
    storage = MeteredStorage(tmp_path / "blobs")
    parts = [os.urandom(70_000), os.urandom(30_000)]
    data = b"".join(parts)
    async with service_over(storage, SQLMetadataStore(f"sqlite+aiosqlite:///{tmp_path}/f.db")) as s:
        upload = await s.uploads.create(
            "alice", filename="a.bin", purpose="assistants", bytes=len(data), mime_type="a/b"
        )
        ids = [(await s.uploads.add_part("alice", upload.id, chunks_of(p))).id for p in parts]
        with pytest.raises(InvalidRequest, match="md5"):
            await s.uploads.complete("alice", upload.id, part_ids=ids, md5="0" * 32)
        assert [p.name for p in appended_file(storage, upload.id).parent.iterdir()] == [
            appended_file(storage, upload.id).name
        ]
        assert (await s.list("alice")).data == []

        right = hashlib.md5(data, usedforsecurity=False).hexdigest()
        moved = storage.moved
        done = await s.uploads.complete("alice", upload.id, part_ids=ids, md5=right)

        assert done.file is not None
        assert storage.moved - moved == len(data)  # read once, to check the md5; not written
        assert sha256(storage.path_for(await stored_key(s, done.file.id)).read_bytes()) == (
            sha256(data)
        )


async def test_a_commit_that_fails_after_the_seal_loses_no_part(tmp_path: Path) -> None:
    storage = MeteredStorage(tmp_path / "blobs")
    metadata = FaultyMetadataStore(SQLMetadataStore(f"sqlite+aiosqlite:///{tmp_path}/f.db"))
    parts = [os.urandom(70_000), os.urandom(30_000)]
    async with service_over(storage, metadata) as s:
        upload = await s.uploads.create(
            "alice", filename="a.bin", purpose="assistants", bytes=100_000, mime_type="a/b"
        )
        ids = [(await s.uploads.add_part("alice", upload.id, chunks_of(p))).id for p in parts]
        metadata.fail_commit = 1
        with pytest.raises(BackendUnavailable):
            await s.uploads.complete("alice", upload.id, part_ids=ids)
        assert stored_files(storage.root) == [
            appended_file(storage, upload.id).relative_to(storage.root).as_posix()
        ]

        done = await s.uploads.complete("alice", upload.id, part_ids=ids)

        assert done.file is not None
        content = await read_file(s, done.file.id)
        assert sha256(content) == sha256(b"".join(parts))


# -- cancel and expiry remove the appended file --------------------------------------------------


async def test_cancel_removes_the_appended_file(tmp_path: Path) -> None:
    storage = MeteredStorage(tmp_path / "blobs")
    async with service_over(storage, SQLMetadataStore(f"sqlite+aiosqlite:///{tmp_path}/f.db")) as s:
        upload = await s.uploads.create(
            "alice", filename="a.bin", purpose="assistants", bytes=3 * MiB, mime_type="a/b"
        )
        for _ in range(2):
            await s.uploads.add_part("alice", upload.id, chunks_of(os.urandom(MiB)))
        assert appended_file(storage, upload.id).stat().st_size == 2 * MiB

        await s.uploads.cancel("alice", upload.id)

        assert stored_files(storage.root) == []
        assert await s.metadata.get_parts("alice", upload.id) == []


async def test_the_sweeper_removes_the_appended_file_of_an_expired_upload(tmp_path: Path) -> None:
    storage = MeteredStorage(tmp_path / "blobs")
    clock = ManualClock(T0)
    metadata = SQLMetadataStore(f"sqlite+aiosqlite:///{tmp_path}/f.db")
    async with service_over(storage, metadata, clock) as s:
        upload = await s.uploads.create(
            "alice", filename="a.bin", purpose="assistants", bytes=3 * MiB, mime_type="a/b"
        )
        for _ in range(2):
            await s.uploads.add_part("alice", upload.id, chunks_of(os.urandom(MiB)))
        assert appended_file(storage, upload.id).stat().st_size == 2 * MiB
        clock.advance(3601)

        report = await s.sweep()

        assert report.upload_parts == 2
        assert stored_files(storage.root) == []
        assert (await s.metadata.usage("alice")).bytes == 0


async def test_an_appended_file_left_by_a_dead_process_is_removed_with_the_partials(
    tmp_path: Path,
) -> None:
    """A process that dies between appending a part and recording it leaves a file no record
    names: the orphan pass removes it once it is older than the grace period."""
    storage = LocalStorage(tmp_path / "blobs")
    blob = await storage.append("uploads/upload_x/appended", chunks_of(b"abc"), offset=0)
    assert blob is not None
    path = appended_file(storage, "upload_x")
    os.utime(path, (T0 - 7200, T0 - 7200))
    assert [key async for key in storage.iter_keys(modified_before=T0)] == []

    assert await storage.remove_partials(modified_before=T0 - 3600) == 1

    assert stored_files(storage.root) == []
