"""A client that sends its body too slowly is cut off; a server that stores slowly is not."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import AsyncIterable, AsyncIterator
from pathlib import Path

import anyio
import httpx
import pytest

from openai_files import FilesService, LocalStorage, MemoryMetadataStore, create_app
from openai_files.http import FormLimits
from openai_files.storage.base import StoredBlob

from ..support import serve, stored_files

BOUNDARY = "idle"
HEAD = (
    f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="purpose"\r\n\r\nassistants\r\n'
    f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="s.bin"\r\n\r\n'
).encode()


def test_a_stalled_upload_is_408_and_leaves_nothing(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path / "blobs")
    service = FilesService(storage, MemoryMetadataStore())
    app = create_app(service, form_limits=FormLimits(idle_timeout=0.5))
    with serve(app) as server, socket.create_connection(("127.0.0.1", server.port)) as sock:
        sock.sendall(
            b"POST /v1/files HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n"
            + f"Content-Type: multipart/form-data; boundary={BOUNDARY}\r\n\r\n".encode()
        )
        body = HEAD + b"x" * 1000
        sock.sendall(b"%x\r\n%s\r\n" % (len(body), body))
        started = time.monotonic()
        sock.settimeout(10)
        response = b""
        while not response.rstrip().endswith(b"}"):
            data = sock.recv(65536)
            if not data:
                break
            response += data
        waited = time.monotonic() - started
        status = int(response.split(b" ", 2)[1])
        error = json.loads(response.partition(b"\r\n\r\n")[2])["error"]
        assert (status, error["code"]) == (408, "request_timeout")
        assert 0.4 < waited < 5
        assert httpx.get(server.url + "/v1/files").json()["data"] == []
    assert stored_files(storage.root) == []


class SlowStorage(LocalStorage):
    """Takes its time over every chunk it stores, as a stalled disk or S3 might."""

    async def put(self, key: str, chunks: AsyncIterable[bytes]) -> StoredBlob:
        async def slowly() -> AsyncIterator[bytes]:
            async for chunk in chunks:
                await anyio.sleep(0.3)
                yield chunk

        return await super().put(key, slowly())


@pytest.mark.anyio
async def test_time_the_server_spends_storing_does_not_count_as_idle(tmp_path: Path) -> None:
    service = FilesService(SlowStorage(tmp_path / "blobs"), MemoryMetadataStore())
    app = create_app(service, form_limits=FormLimits(idle_timeout=0.2))
    parts = [HEAD, b"a" * 1000, b"b" * 1000, f"\r\n--{BOUNDARY}--\r\n".encode()]

    async def body() -> AsyncIterator[bytes]:
        for part in parts:
            yield part

    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://t"
    ) as client:
        response = await client.post(
            "/v1/files",
            content=body(),
            headers={"content-type": f"multipart/form-data; boundary={BOUNDARY}"},
        )
    assert response.status_code == 200, response.text
    assert response.json()["bytes"] == 2000
