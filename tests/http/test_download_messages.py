"""How a download reaches the ASGI server: a body that fits in the storage's first chunk is
sent as one message, a longer one is streamed chunk by chunk; and a download reads the file's
record once, for its stat, not again to open its bytes."""

from __future__ import annotations

from pathlib import Path

import anyio
import httpx
import pytest
from starlette.types import ASGIApp, Message

from openai_files import FilesService, LocalStorage, MemoryMetadataStore, create_app
from openai_files.errors import FileNotFound
from openai_files.metadata.base import FileRecord

pytestmark = pytest.mark.anyio

BLOCK = 64
DATA = bytes(range(200))


class CountingMetadataStore(MemoryMetadataStore):
    """Counts the records read with `get`."""

    reads = 0

    async def get(
        self, owner: str, file_id: str, *, now: int, include_deleted: bool = False
    ) -> FileRecord | None:
        self.reads += 1
        return await super().get(owner, file_id, now=now, include_deleted=include_deleted)


@pytest.fixture
def metadata() -> CountingMetadataStore:
    return CountingMetadataStore()


@pytest.fixture
def service(tmp_path: Path, metadata: CountingMetadataStore) -> FilesService:
    return FilesService(LocalStorage(tmp_path, block_size=BLOCK, fsync=False), metadata)


async def upload(app: ASGIApp, data: bytes) -> str:
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://t"
    ) as client:
        made = await client.post(
            "/v1/files", files={"file": ("f.bin", data)}, data={"purpose": "assistants"}
        )
    file_id: str = made.json()["id"]
    return file_id


async def messages(app: ASGIApp, path: str, *headers: tuple[bytes, bytes]) -> list[Message]:
    """What ``app`` sends for ``GET path``, called as an ASGI server calls it."""
    sent: list[Message] = []
    requested = False

    async def receive() -> Message:
        nonlocal requested
        if not requested:
            requested = True
            return {"type": "http.request", "body": b"", "more_body": False}
        await anyio.sleep_forever()
        raise AssertionError  # pragma: no cover

    async def send(message: Message) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"t"), *headers],
        "client": ("127.0.0.1", 1),
        "server": ("127.0.0.1", 80),
    }
    await app(scope, receive, send)
    return sent


def bodies(sent: list[Message]) -> list[Message]:
    return [message for message in sent if message["type"] == "http.response.body"]


@pytest.mark.parametrize(
    ("size", "headers", "status", "expected"),
    [
        (10, (), 200, DATA[:10]),
        (0, (), 200, b""),
        (200, ((b"range", b"bytes=70-79"),), 206, DATA[70:80]),
        (200, ((b"range", b"bytes=-5"),), 206, DATA[195:]),
    ],
)
async def test_a_body_within_the_first_chunk_is_sent_in_one_message(
    service: FilesService,
    size: int,
    headers: tuple[tuple[bytes, bytes], ...],
    status: int,
    expected: bytes,
) -> None:
    app = create_app(service)
    file_id = await upload(app, DATA[:size])
    sent = await messages(app, f"/v1/files/{file_id}/content", *headers)
    assert sent[0]["type"] == "http.response.start"
    assert sent[0]["status"] == status
    assert (b"content-length", str(len(expected)).encode()) in sent[0]["headers"]
    assert len(sent) == 2
    assert sent[1]["body"] == expected
    assert not sent[1].get("more_body", False)


async def test_a_longer_body_is_streamed_chunk_by_chunk(service: FilesService) -> None:
    app = create_app(service)
    file_id = await upload(app, DATA)
    sent = bodies(await messages(app, f"/v1/files/{file_id}/content"))
    assert b"".join(message["body"] for message in sent) == DATA
    assert [len(message["body"]) for message in sent if message["body"]] == [64, 64, 64, 8]
    assert [message.get("more_body", False) for message in sent][-1] is False


async def test_a_download_reads_the_record_once(
    service: FilesService, metadata: CountingMetadataStore
) -> None:
    app = create_app(service)
    file_id = await upload(app, DATA)
    metadata.reads = 0
    sent = await messages(app, f"/v1/files/{file_id}/content")
    assert b"".join(message["body"] for message in bodies(sent)) == DATA
    assert metadata.reads == 1


async def test_content_given_a_stat_reads_no_record_and_serves_its_range(
    service: FilesService, metadata: CountingMetadataStore
) -> None:
    made = await service.create("alice", file=DATA, filename="f.bin", purpose="assistants")
    stat = await service.stat("alice", made.id)
    metadata.reads = 0
    content = await service.content("alice", made.id, start=5, end=9, stat=stat)
    assert b"".join([chunk async for chunk in content.chunks]) == DATA[5:9]
    assert metadata.reads == 0


async def test_a_stat_of_another_owner_or_file_opens_nothing_it_does_not_name(
    service: FilesService,
) -> None:
    made = await service.create("alice", file=DATA, filename="f.bin", purpose="assistants")
    other = await service.create("alice", file=b"other", filename="o.bin", purpose="assistants")
    stat = await service.stat("alice", made.id)
    with pytest.raises(FileNotFound):
        await service.content("bob", made.id, stat=stat)
    content = await service.content("alice", other.id, stat=stat)
    assert b"".join([chunk async for chunk in content.chunks]) == b"other"
