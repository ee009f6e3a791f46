"""Clients that misbehave on a real connection: one that disconnects in the middle of an upload,
one that sends a truncated body, one that sends its body very slowly, one that stops reading a
download. Each is served by uvicorn on loopback while other clients keep working; afterwards
the server holds no open file, task, connection or temporary file more than before, counted."""

from __future__ import annotations

import asyncio
import hashlib
import os
import socket
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from starlette.types import ASGIApp, Receive, Scope, Send

from openai_files import FilesService, LocalStorage, SQLMetadataStore, create_app
from openai_files.http._multipart import FormLimits

from ..support import ServerThread, stored_files

IDLE_TIMEOUT = 1.0
BOUNDARY = "client-faults-boundary"
MiB = 1024 * 1024


class LoopProbe:
    """The app, remembering the event loop that serves it, to count the server's tasks."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.loop: asyncio.AbstractEventLoop | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        self.loop = asyncio.get_running_loop()
        await self.app(scope, receive, send)

    def tasks(self) -> int:
        """How many tasks the server's loop has, this count's own excluded."""
        assert self.loop is not None

        async def count() -> int:
            return len(asyncio.all_tasks()) - 1

        return asyncio.run_coroutine_threadsafe(count(), self.loop).result(timeout=5)


@dataclass(frozen=True)
class Snapshot:
    """What a leak would show: descriptors open on the data and temporary directories, sockets,
    the server's tasks, and files in the temporary directory or half-written in storage."""

    data_files_open: int
    sockets_open: int
    tasks: int
    temporary_files: int
    partial_blobs: int


@dataclass
class Rig:
    root: Path
    probe: LoopProbe
    server: ServerThread
    rest: Snapshot | None = None
    """The snapshot of the server at rest, once the warm-up's connections have closed."""

    @property
    def url(self) -> str:
        return self.server.url + "/v1"

    def snapshot(self) -> Snapshot:
        data_files = sockets = 0
        for fd in os.listdir("/proc/self/fd"):
            try:
                target = os.readlink(f"/proc/self/fd/{fd}")
            except OSError:  # closed since it was listed
                continue
            sockets += target.startswith("socket:")
            blob_or_temp = (str(self.root / "blobs"), str(self.root / "tmp"))
            data_files += target.startswith(blob_or_temp)
        return Snapshot(
            data_files_open=data_files,
            sockets_open=sockets,
            tasks=self.probe.tasks(),
            temporary_files=len(stored_files(self.root / "tmp")),
            partial_blobs=sum(name.startswith(".") for name in map(os.path.basename, self.blobs())),
        )

    def settled(self, expected: Snapshot | None = None, *, within: float = 10.0) -> Snapshot:
        """The snapshot once it is ``expected`` (the server at rest by default), or the last
        one after ``within`` seconds."""
        expected = expected or self.rest
        deadline = time.monotonic() + within
        while (now := self.snapshot()) != expected and time.monotonic() < deadline:
            time.sleep(0.05)
        return now

    def at_rest(self) -> Snapshot:
        """The snapshot once it has not changed for half a second."""
        last, since = self.snapshot(), time.monotonic()
        while time.monotonic() - since < 0.5:
            time.sleep(0.05)
            if (now := self.snapshot()) != last:
                last, since = now, time.monotonic()
        return last

    def blobs(self) -> list[str]:
        return stored_files(self.root / "blobs")


@pytest.fixture
def rig(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Rig]:
    (tmp_path / "tmp").mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    service = FilesService(
        LocalStorage(tmp_path / "blobs"),
        SQLMetadataStore(f"sqlite+aiosqlite:///{tmp_path / 'files.db'}"),
    )
    app = create_app(service, form_limits=FormLimits(idle_timeout=IDLE_TIMEOUT), close_service=True)
    probe = LoopProbe(app)
    with ServerThread(probe) as server:
        rig = Rig(tmp_path, probe, server)
        with httpx.Client(base_url=rig.url) as client:  # warm up: open the database pool
            for _ in range(3):
                upload(client, os.urandom(1000))
            for file in client.get("/files").json()["data"]:
                client.delete(f"/files/{file['id']}").raise_for_status()
        rig.rest = rig.at_rest()
        yield rig


def upload(client: httpx.Client, data: bytes, name: str = "data.bin") -> str:
    response = client.post("/files", files={"file": (name, data)}, data={"purpose": "assistants"})
    response.raise_for_status()
    file_id: str = response.json()["id"]
    return file_id


def form_head(size: int) -> tuple[bytes, bytes]:
    """The multipart form around a file of ``size`` bytes: what precedes and follows it."""
    head = (
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="purpose"\r\n\r\nassistants\r\n'
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="big.bin"\r\n'
        "Content-Type: application/octet-stream\r\n\r\n"
    ).encode()
    return head, f"\r\n--{BOUNDARY}--\r\n".encode()


def start_upload(port: int, size: int, sent: int) -> socket.socket:
    """A connection that declared an upload of a ``size``-byte file and sent ``sent`` of them."""
    head, tail = form_head(size)
    request = (
        "POST /v1/files HTTP/1.1\r\nHost: files.test\r\n"
        f"Content-Type: multipart/form-data; boundary={BOUNDARY}\r\n"
        f"Content-Length: {len(head) + size + len(tail)}\r\n\r\n"
    ).encode()
    connection = socket.create_connection(("127.0.0.1", port))
    connection.sendall(request + head + os.urandom(sent))
    return connection


def response_status(connection: socket.socket) -> int | None:
    """The status the server answered on ``connection``; None when it closed without one."""
    connection.settimeout(30)
    answer = b""
    while b"\r\n" not in answer:
        chunk = connection.recv(65536)
        if not chunk:
            return None
        answer += chunk
    return int(answer.split(b" ", 2)[1])


def others_are_served(rig: Rig) -> None:
    """A full round trip by a well-behaved client, each step in well under a second."""
    data = os.urandom(3 * MiB)
    with httpx.Client(base_url=rig.url, timeout=5) as client:
        file_id = upload(client, data, "other.bin")
        assert any(f["id"] == file_id for f in client.get("/files").json()["data"])
        copy = client.get(f"/files/{file_id}/content").content
        assert hashlib.sha256(copy).digest() == hashlib.sha256(data).digest()
        client.delete(f"/files/{file_id}").raise_for_status()


def test_a_client_disconnecting_mid_upload_leaks_nothing_and_others_are_served(rig: Rig) -> None:
    connection = start_upload(rig.server.port, 64 * MiB, 8 * MiB)
    time.sleep(0.2)
    others_are_served(rig)
    connection.close()
    assert rig.settled() == rig.rest
    assert rig.blobs() == []


def test_a_truncated_body_is_no_server_error_and_leaks_nothing(rig: Rig) -> None:
    connection = start_upload(rig.server.port, 4 * MiB, 2 * MiB)
    connection.shutdown(socket.SHUT_WR)  # the body ends half-way
    status = response_status(connection)
    assert status is None or 400 <= status < 500
    connection.close()
    assert rig.settled() == rig.rest
    assert rig.blobs() == []


def test_a_body_sent_too_slowly_is_408_after_the_idle_timeout_and_leaks_nothing(
    rig: Rig,
) -> None:
    # Before the first byte: the server's idle timer starts at the last byte it receives,
    # which a clock read after sending could follow by a fraction of a millisecond.
    started = time.monotonic()
    connection = start_upload(rig.server.port, 4 * MiB, 64 * 1024)
    others_are_served(rig)
    assert response_status(connection) == 408
    assert IDLE_TIMEOUT <= time.monotonic() - started < IDLE_TIMEOUT + 5
    connection.close()
    assert rig.settled() == rig.rest
    assert rig.blobs() == []


def test_a_client_that_stops_reading_a_download_is_let_go_after_the_idle_timeout(
    rig: Rig,
) -> None:
    with httpx.Client(base_url=rig.url) as client:
        file_id = upload(client, os.urandom(32 * MiB))
    rest = rig.settled()
    assert rest == rig.rest
    connection = socket.create_connection(("127.0.0.1", rig.server.port))
    connection.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
    connection.sendall(f"GET /v1/files/{file_id}/content HTTP/1.1\r\nHost: t\r\n\r\n".encode())
    assert connection.recv(65536).startswith(b"HTTP/1.1 200")
    time.sleep(0.2)  # the client reads no more: the server's sends back up
    stalled = rig.snapshot()
    assert stalled.data_files_open == rest.data_files_open + 1
    assert stalled.tasks > rest.tasks
    others_are_served(rig)

    # Past the idle timeout the response is abandoned: its file and its task are released
    # although the client still holds its connection open.
    released = rig.settled(
        Snapshot(
            **{
                **vars(stalled),
                "data_files_open": rest.data_files_open,
                "tasks": rest.tasks,
            }
        ),
        within=IDLE_TIMEOUT + 5,
    )
    assert released.data_files_open == rest.data_files_open
    assert released.tasks == rest.tasks
    connection.close()
    assert rig.settled() == rig.rest
    with httpx.Client(base_url=rig.url) as client:
        assert client.get(f"/files/{file_id}").status_code == 200


def test_a_client_closing_a_download_midway_releases_everything_at_once(rig: Rig) -> None:
    with httpx.Client(base_url=rig.url) as client:
        file_id = upload(client, os.urandom(32 * MiB))
    assert rig.settled() == rig.rest
    with (
        httpx.Client(base_url=rig.url) as client,
        client.stream("GET", f"/files/{file_id}/content") as response,
    ):
        next(response.iter_bytes())
    assert rig.settled(within=IDLE_TIMEOUT / 2) == rig.rest


def test_a_client_disconnecting_mid_part_leaves_no_part_and_the_upload_goes_on(rig: Rig) -> None:
    size = 2 * MiB
    with httpx.Client(base_url=rig.url) as client:
        created = client.post(
            "/uploads",
            json={
                "purpose": "assistants",
                "filename": "parts.bin",
                "bytes": size,
                "mime_type": "application/octet-stream",
            },
        )
        created.raise_for_status()
        upload_id = created.json()["id"]
    assert rig.settled() == rig.rest
    head = (
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="data"; filename="blob"\r\n'
        "Content-Type: application/octet-stream\r\n\r\n"
    ).encode()
    request = (
        f"POST /v1/uploads/{upload_id}/parts HTTP/1.1\r\nHost: t\r\n"
        f"Content-Type: multipart/form-data; boundary={BOUNDARY}\r\n"
        f"Content-Length: {len(head) + size + 64}\r\n\r\n"
    ).encode()
    connection = socket.create_connection(("127.0.0.1", rig.server.port))
    connection.sendall(request + head + os.urandom(size // 2))
    time.sleep(0.2)
    connection.close()
    assert rig.settled() == rig.rest
    assert rig.blobs() == []

    data = os.urandom(size)
    with httpx.Client(base_url=rig.url) as client:
        part = client.post(f"/uploads/{upload_id}/parts", files={"data": ("blob", data)})
        part.raise_for_status()
        done = client.post(f"/uploads/{upload_id}/complete", json={"part_ids": [part.json()["id"]]})
        done.raise_for_status()
        file_id = done.json()["file"]["id"]
        assert client.get(f"/files/{file_id}/content").content == data
