"""The maximum file size is enforced while the body streams in, not after it has been read."""

from __future__ import annotations

import json
import socket
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from openai_files import FilesService, LocalStorage, Policy, SQLMetadataStore, create_app

from ..support import ServerThread, serve, stored_files

LIMIT = 10 * 1024 * 1024
HUGE = 2 * 1024**3
CHUNK = 256 * 1024


class CountingReceive:
    """Counts the request body bytes the application actually pulled from the server."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.received = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def counted() -> Message:
            message = await receive()
            self.received += len(message.get("body", b""))
            return message

        await self.app(scope, counted, send)


@pytest.fixture
def limited(tmp_path: Path) -> Iterator[tuple[ServerThread, CountingReceive, Path]]:
    root = tmp_path / "blobs"
    service = FilesService(
        LocalStorage(root),
        SQLMetadataStore(f"sqlite+aiosqlite:///{tmp_path / 'files.db'}"),
        policy=Policy(max_file_size=LIMIT),
    )
    counter = CountingReceive(create_app(service, close_service=True))
    with serve(counter) as server:
        yield server, counter, root


def head_of_form(boundary: str) -> bytes:
    return (
        f'--{boundary}\r\nContent-Disposition: form-data; name="purpose"\r\n\r\nbatch\r\n'
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="big.jsonl"'
        "\r\nContent-Type: application/octet-stream\r\n\r\n"
    ).encode()


def upload(port: int, *, chunked: bool) -> tuple[int, dict[str, object], int]:
    """Stream a 2 GiB upload until the server answers; (status, body, bytes sent)."""
    boundary = uuid.uuid4().hex
    head = head_of_form(boundary)
    framing = (
        "Transfer-Encoding: chunked"
        if chunked
        else f"Content-Length: {len(head) + HUGE + len(boundary) + 8}"
    )
    request = (
        f"POST /v1/files HTTP/1.1\r\nHost: 127.0.0.1\r\n{framing}\r\n"
        f"Content-Type: multipart/form-data; boundary={boundary}\r\n\r\n"
    ).encode()
    sock = socket.create_connection(("127.0.0.1", port))
    sent = 0
    answered = threading.Event()

    def send_body() -> None:
        nonlocal sent
        block = b"x" * CHUNK
        try:
            sock.sendall(request)
            pieces = [head] + [block] * (HUGE // CHUNK)
            for piece in pieces:
                if answered.is_set():
                    return
                sock.sendall(b"%x\r\n%s\r\n" % (len(piece), piece) if chunked else piece)
                sent += len(piece)
        except OSError:
            return  # the server closed the connection after answering

    sender = threading.Thread(target=send_body, daemon=True)
    sender.start()
    response = b""
    while b"\r\n\r\n" not in response or not response.rstrip().endswith(b"}"):
        data = sock.recv(65536)
        if not data:
            break
        response += data
    answered.set()
    sock.close()
    sender.join(timeout=10)
    status_line, _, rest = response.partition(b"\r\n")
    body = rest.partition(b"\r\n\r\n")[2]
    return int(status_line.split()[1]), json.loads(body), sent


@pytest.mark.parametrize("chunked", [True, False], ids=["chunked", "content-length"])
def test_a_2_gib_upload_is_refused_with_413_after_little_more_than_the_limit(
    limited: tuple[ServerThread, CountingReceive, Path], chunked: bool
) -> None:
    server, counter, root = limited
    status, body, sent = upload(server.port, chunked=chunked)
    assert status == 413
    assert body["error"]["code"] == "file_too_large"  # type: ignore[index]
    assert body["error"]["type"] == "invalid_request_error"  # type: ignore[index]
    # The server stops reading as soon as the body passes the limit (plus the form's overhead).
    assert counter.received <= LIMIT + 2 * 1024 * 1024
    assert sent < LIMIT + 64 * 1024 * 1024
    if not chunked:
        assert counter.received == 0  # a declared length over the limit is refused up front
    assert stored_files(root) == []
    listing = json.loads(socket_get(server.port, "/v1/files").partition(b"\r\n\r\n")[2])
    assert listing["data"] == []


def socket_get(port: int, path: str) -> bytes:
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
        chunks = []
        while data := sock.recv(65536):
            chunks.append(data)
    return b"".join(chunks)
