"""The HTTP edge against hostile clients: redirects never built from ``Host``, one
``Authorization`` header or none, and deadlines for slow request headers and bodies.

- The trailing-slash redirect (``/v1/files/`` -> ``/v1/files``) has a relative ``Location``.
- A request with two ``Authorization`` headers is 401, whichever key each one holds.
- A request body that keeps coming a byte at a time ends with 408 once it has taken
  ``FormLimits.body_timeout`` in all or come slower than ``FormLimits.min_body_rate``; one
  that comes at a normal rate is not cut.
- ``openai-files serve`` closes a connection whose request headers are not complete within
  ``--header-timeout`` seconds.
"""

from __future__ import annotations

import contextlib
import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from starlette.applications import Starlette

from openai_files import FilesService, MemoryMetadataStore, MemoryStorage, create_app
from openai_files.http import FormLimits
from openai_files.http.auth import api_key_auth

from ..support import serve, server_process

KEY_A, KEY_B = "sk-edge-a-0123456789abcdef", "sk-edge-b-0123456789abcdef"
BOUNDARY = "edge"
HEAD = (
    f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="purpose"\r\n\r\nassistants\r\n'
    f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="s.bin"\r\n\r\n'
).encode()
TAIL = f"\r\n--{BOUNDARY}--\r\n".encode()


def memory_app(limits: FormLimits | None = None) -> Starlette:
    service = FilesService(MemoryStorage(), MemoryMetadataStore())
    return create_app(
        service, auth=api_key_auth({KEY_A: "team-a", KEY_B: "team-b"}), form_limits=limits
    )


@pytest.fixture
def keyed_server(tmp_path: Path) -> Iterator[str]:
    args = ["--storage", "memory://", "--metadata", "memory://"]
    keys = ["--api-key", f"{KEY_A}=team-a", "--api-key", f"{KEY_B}=team-b"]
    with server_process(tmp_path, *args, *keys, "--header-timeout", "1") as server:
        yield server.url


# Redirects


@pytest.mark.parametrize("path", ["/v1/files/", "/files/", "/v1/files/file-abc/content/"])
def test_the_trailing_slash_redirect_is_relative_whatever_the_host(
    keyed_server: str, path: str
) -> None:
    with httpx.Client(base_url=keyed_server) as client:
        response = client.get(path + "?limit=5", headers={"host": "evil.example"})
    assert response.status_code == 307
    assert response.headers["location"] == path.rstrip("/") + "?limit=5"
    assert "evil" not in response.text


def test_a_redirect_is_never_to_another_host(keyed_server: str) -> None:
    """A path that starts with ``//`` would be a URL of another host as a Location."""
    with socket.create_connection(("127.0.0.1", int(keyed_server.rsplit(":", 1)[1]))) as sock:
        sock.sendall(b"GET //v1/files/ HTTP/1.1\r\nHost: evil.example\r\n\r\n")
        head = sock.recv(65536).partition(b"\r\n\r\n")[0].decode("latin-1").lower()
    assert "location: //" not in head
    assert "evil.example" not in head


def test_an_unknown_path_is_still_404_in_openai_shape(keyed_server: str) -> None:
    response = httpx.get(keyed_server + "/v1/nothing/", headers={"host": "evil.example"})
    assert response.status_code == 404
    assert response.json()["error"]["type"] == "invalid_request_error"


# Authorization


@pytest.mark.parametrize(
    "sent", [[KEY_A, KEY_B], [KEY_B, KEY_A], [KEY_A, KEY_A], [KEY_A, "wrong"], ["wrong", KEY_A]]
)
def test_two_authorization_headers_are_refused(keyed_server: str, sent: list[str]) -> None:
    headers = httpx.Headers([("authorization", f"Bearer {key}") for key in sent])
    with httpx.Client(base_url=keyed_server) as client:
        response = client.get("/v1/files", headers=headers)
        assert response.status_code == 401
        error = response.json()["error"]
        assert (error["type"], error["code"]) == ("authentication_error", "invalid_api_key")
        assert "send exactly one" in error["message"]
        assert KEY_A not in response.text
        assert client.get("/v1/files", headers={"authorization": f"Bearer {KEY_A}"}).is_success


# Request bodies


def slow_upload(port: int, chunks: list[bytes], every: float, *, limit: float = 20) -> bytes:
    """POST a chunked multipart body over a raw socket, one chunk every ``every`` seconds,
    until the server answers; the response as bytes."""
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(
            b"POST /v1/files HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n"
            + f"Authorization: Bearer {KEY_A}\r\n".encode()
            + f"Content-Type: multipart/form-data; boundary={BOUNDARY}\r\n\r\n".encode()
        )
        sock.settimeout(every)
        deadline = time.monotonic() + limit
        response = b""
        for chunk in chunks:
            try:
                sock.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            except OSError:
                break
            try:
                data = sock.recv(65536)
            except TimeoutError:
                assert time.monotonic() < deadline, "the server never answered"
                continue
            response += data
            break
        else:
            sock.sendall(b"0\r\n\r\n")
        sock.settimeout(10)
        while not response.rstrip().endswith(b"}"):
            data = sock.recv(65536)
            if not data:
                break
            response += data
    return response


def status_and_error(response: bytes) -> tuple[int, dict[str, object]]:
    """The status and the error object (or the whole JSON body when it is no error)."""
    status = int(response.split(b" ", 2)[1])
    body = json.loads(response.partition(b"\r\n\r\n")[2])
    return status, body.get("error", body)


def test_a_body_that_trickles_past_the_body_timeout_is_408() -> None:
    limits = FormLimits(idle_timeout=1.0, body_timeout=2.0, min_body_rate=0)
    with serve(memory_app(limits)) as server:
        started = time.monotonic()
        response = slow_upload(server.port, [HEAD, *[b"x"] * 200], every=0.2)
        waited = time.monotonic() - started
    status, error = status_and_error(response)
    assert (status, error["code"]) == (408, "request_timeout")
    assert "took more than 2 seconds" in str(error["message"])
    assert 1.8 < waited < 6


def test_a_body_slower_than_the_minimum_rate_is_408() -> None:
    limits = FormLimits(idle_timeout=1.0, body_timeout=None, min_body_rate=1024)
    with serve(memory_app(limits)) as server:
        started = time.monotonic()
        response = slow_upload(server.port, [HEAD, *[b"x"] * 200], every=0.2)
        waited = time.monotonic() - started
    status, error = status_and_error(response)
    assert (status, error["code"]) == (408, "request_timeout")
    assert "less than 1024 bytes per second" in str(error["message"])
    assert 0.9 < waited < 6


def test_a_large_upload_at_a_normal_rate_is_not_cut() -> None:
    """2 MiB over 3 seconds, with a body timeout of 10 s and a minimum rate of 64 KiB/s."""
    limits = FormLimits(idle_timeout=1.0, body_timeout=10.0, min_body_rate=64 * 1024)
    chunks = [HEAD, *[b"y" * (128 * 1024)] * 16, TAIL]
    with serve(memory_app(limits)) as server:
        started = time.monotonic()
        response = slow_upload(server.port, chunks, every=0.2)
        assert time.monotonic() - started > 3
    status, body = status_and_error(response)
    assert status == 200, response
    assert body["bytes"] == 16 * 128 * 1024


def test_serve_ends_a_trickling_body_after_its_body_timeout(tmp_path: Path) -> None:
    args = ["--storage", "memory://", "--metadata", "memory://", "--api-key", f"{KEY_A}=team"]
    with server_process(tmp_path, *args, "--body-timeout", "2") as server:
        port = int(server.url.rsplit(":", 1)[1])
        started = time.monotonic()
        response = slow_upload(port, [HEAD, *[b"x"] * 200], every=0.5)
        waited = time.monotonic() - started
    status, error = status_and_error(response)
    assert (status, error["code"]) == (408, "request_timeout")
    assert 1.8 < waited < 8


# Request headers


def closed_within(port: int, first: bytes, then: bytes, every: float, limit: float) -> float:
    """Send ``first``, then ``then`` a byte every ``every`` seconds, until the server closes
    the connection; how long that took, or ``limit`` + 1 if it was still open then."""
    with socket.create_connection(("127.0.0.1", port)) as sock:
        started = time.monotonic()
        sock.sendall(first)
        sock.settimeout(every)
        sent = 0
        while time.monotonic() - started < limit:
            try:
                if not sock.recv(65536):
                    return time.monotonic() - started
            except TimeoutError:
                pass
            except ConnectionResetError:
                return time.monotonic() - started
            try:
                sock.sendall(then[sent % len(then) : sent % len(then) + 1])
            except OSError:
                return time.monotonic() - started
            sent += 1
    return limit + 1


def test_serve_closes_a_connection_whose_headers_trickle(keyed_server: str) -> None:
    port = int(keyed_server.rsplit(":", 1)[1])
    took = closed_within(port, b"GET /v1/files HTTP/1.1\r\n", b"X-Slow: abcdefgh\r\n", 0.2, 8)
    assert 0.8 < took < 4


def test_serve_closes_a_connection_that_sends_nothing(keyed_server: str) -> None:
    port = int(keyed_server.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.settimeout(8)
        started = time.monotonic()
        assert sock.recv(1) == b""
        assert 0.8 < time.monotonic() - started < 4


def test_serve_closes_a_kept_alive_connection_whose_next_headers_trickle(
    keyed_server: str,
) -> None:
    port = int(keyed_server.rsplit(":", 1)[1])
    request = f"GET /v1/files HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer {KEY_A}\r\n\r\n"
    first = request.encode() + b"GET /v1/files HTTP/1.1\r\n"
    took = closed_within(port, first, b"X-Slow: abcdefgh\r\n", 0.2, 8)
    assert 0.8 < took < 4


def test_headers_sent_in_time_are_served_on_a_kept_alive_connection(keyed_server: str) -> None:
    with httpx.Client(base_url=keyed_server, headers={"authorization": f"Bearer {KEY_A}"}) as c:
        for _ in range(3):
            assert c.get("/v1/files").status_code == 200
            time.sleep(0.5)
        created = c.post("/v1/files", files={"file": ("a", b"a")}, data={"purpose": "vision"})
        assert created.status_code == 200


# Request heads: serve runs httptools, whose parser keeps headers of any size and number; the
# protocol of serve bounds them as h11 did.


def _head_answer(url: str, headers: list[tuple[str, str]]) -> int | None:
    """The status ``serve`` answers a GET carrying ``headers``, or None if it only closed."""
    port = int(url.rsplit(":", 1)[1])
    lines = "".join(f"{name}: {value}\r\n" for name, value in headers)
    head = f"GET /v1/files HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {KEY_A}\r\n{lines}\r\n"
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        with contextlib.suppress(OSError):  # refused before all was read: the answer waits
            sock.sendall(head.encode())
        answer = sock.recv(200)
    return int(answer.split()[1]) if answer.startswith(b"HTTP/1.1 ") else None


def test_a_head_within_the_bounds_is_served(keyed_server: str) -> None:
    headers = [(f"x-h{i}", "v" * 100) for i in range(200)]  # 200 fields, about 22 KB
    assert _head_answer(keyed_server, headers) == 200


def test_a_head_over_its_size_is_refused(keyed_server: str) -> None:
    """431 while the head is still arriving; 400 (a parse error) when it came in one read."""
    assert _head_answer(keyed_server, [("x-filler", "a" * (70 * 1024))]) in (400, 431)


def test_a_head_of_too_many_fields_is_refused(keyed_server: str) -> None:
    headers = [(f"x-h{i}", "v") for i in range(300)]
    assert _head_answer(keyed_server, headers) == 400
