"""The hostile-input corpus: every file in ``tests/http/hostile/`` is one request and the answer it
must get. Whatever the request, the answer is never a server error, every 4xx the app gives is in
OpenAI's error shape, nothing another owner stored leaks into it, and a refused request leaves
nothing behind (no listed file, no record, no stored bytes, no temporary file).

A case is a JSON object:

- ``description``: what is hostile about the request, and why the answer is right.
- ``method``, ``path``: the request line, as sent (percent-encoding is kept). ``{own_file_id}``,
  ``{foreign_file_id}`` (a file of another owner) and ``{unknown_file_id}`` (a well-formed id of
  the same shape and time as the foreign one that names nothing) are replaced by real ids.
- ``headers``: ``[name, value]`` pairs, sent in order; ``header_repeat``: ``{"name": "X-{i}",
  "value": ..., "times": n}`` adds n more. The caller's ``Authorization`` is added to every
  request that does not send its own.
- The body, at most one of: ``body`` (bytes), ``json`` (any JSON value, serialized), or
  ``multipart``: ``{"boundary": ..., "parts": [...], "close": true}``, each part either
  ``{"raw": bytes}`` (everything between its delimiter line and the next) or ``{"name", "filename",
  "content_type", "content", "times"}`` (``filename`` and ``content_type`` optional; ``times``
  repeats the part with ``{i}`` in its name or filename replaced by the index). No Content-Type is
  added: the case sends the one it means.
- Bytes are written as a JSON string (sent as UTF-8), ``{"latin1": "..."}`` (one byte per
  character, for bytes that are not UTF-8), ``{"b64": "..."}``, ``{"repeat": bytes, "times": n}``
  or ``{"concat": [bytes, ...]}``.
- ``through``: ``asgi`` (the default: the app through httpx's ASGI transport) or ``server`` (the
  app under uvicorn on loopback, for limits that are the server's, such as header sizes).
- ``expect_status``: one status or a list of acceptable ones. ``expect_param``, ``expect_code``:
  checked when present; ``expect_message``: a fragment of the error message.
- ``answered_by``: ``server`` when uvicorn itself refuses the request before the app sees it
  (its answer is plain text, not OpenAI's shape).
- ``stored``: for an upload that must be accepted, ``{"filename": ..., "content": bytes}``: the
  one file it creates, exactly.
- ``same_as``: ``{"path": ...}``: the answer must be byte for byte the answer to this request
  (with ``{unknown_file_id}`` standing for ``{foreign_file_id}``).
- ``expect_listed``: for a list request, the ids the page must hold, exactly and in order (the
  placeholders above stand for real ids).
"""

from __future__ import annotations

import base64
import gc
import http.client
import io
import json
import re
import select
import socket
import sqlite3
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, closing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest

from openai_files import FilesService, LocalStorage, SQLMetadataStore, api_key_auth, create_app
from openai_files.ids import new_file_id, parse_file_id

from ..support import serve, stored_files

pytestmark = pytest.mark.anyio

CORPUS = Path(__file__).parent / "hostile"
CALLER_KEY = "sk-hostile-caller-5d1c0a9e8f7b6a5c4d3e2f1a"
OTHER_KEY = "sk-hostile-other-0f9e8d7c6b5a4f3e2d1c0b9a"
KEYS = {CALLER_KEY: "caller", OTHER_KEY: "other"}
OTHER_FILENAME = "other-owner-secret.txt"
OTHER_CONTENT = b"the other owner's secret bytes"
STORAGE_KEY = re.compile(r"[0-9a-f]{2}/[0-9a-f]{32}")
METADATA_FILES = {"files.db", "files.db-journal", "files.db-wal", "files.db-shm"}
TABLES = ("openai_files_files", "openai_files_uploads", "openai_files_upload_parts")
REQUEST_SPECIFIC_HEADERS = {"date", "server", "x-request-id"}
UVICORN_REFUSAL = b"Invalid HTTP request received."
HEAD_TOO_LARGE = b"The request's headers are too large"
SERVER_REFUSALS = {400: UVICORN_REFUSAL, 431: HEAD_TOO_LARGE}
"""What the server itself answers, by status: uvicorn a request it cannot parse, serve's
protocol a request whose head is over its bound."""
UNSET: Any = object()


# -- reading a case ---------------------------------------------------------------------------


def data(value: Any) -> bytes:
    """Bytes as a case writes them (see the module docstring)."""
    if isinstance(value, str):
        return value.encode()
    if "latin1" in value:
        return str(value["latin1"]).encode("latin-1")
    if "b64" in value:
        return base64.b64decode(value["b64"], validate=True)
    if "repeat" in value:
        return data(value["repeat"]) * int(value["times"])
    if "concat" in value:
        return b"".join(data(item) for item in value["concat"])
    raise ValueError(f"not a byte string: {value!r}")


def multipart_body(spec: dict[str, Any]) -> bytes:
    delimiter = b"--" + data(spec["boundary"])
    body = b""
    for part in spec["parts"]:
        for index in range(int(part.get("times", 1))):
            body += delimiter + b"\r\n" + part_bytes(part, str(index).encode()) + b"\r\n"
    return body + delimiter + b"--\r\n" if spec.get("close", True) else body


def part_bytes(part: dict[str, Any], index: bytes) -> bytes:
    if "raw" in part:
        return data(part["raw"])
    disposition = b'Content-Disposition: form-data; name="' + data(part["name"]) + b'"'
    if "filename" in part:
        disposition += b'; filename="' + data(part["filename"]) + b'"'
    headers = disposition.replace(b"{i}", index) + b"\r\n"
    if "content_type" in part:
        headers += b"Content-Type: " + data(part["content_type"]) + b"\r\n"
    return headers + b"\r\n" + data(part.get("content", ""))


@dataclass(frozen=True)
class Case:
    name: str
    description: str
    method: str
    path: str
    headers: list[tuple[bytes, bytes]]
    body: bytes
    through: str
    expect_status: tuple[int, ...]
    expect_param: Any
    expect_code: Any
    expect_message: str | None
    answered_by: str
    stored: tuple[str, bytes] | None
    same_as: str | None
    expect_listed: list[str] | None

    @classmethod
    def load(cls, file: Path) -> Case:
        spec = json.loads(file.read_text())
        headers = [(data(name), data(value)) for name, value in spec.get("headers", [])]
        if "header_repeat" in spec:
            repeat = spec["header_repeat"]
            name, value = data(repeat["name"]), data(repeat["value"])
            headers += [
                (name.replace(b"{i}", str(i).encode()), value) for i in range(repeat["times"])
            ]
        bodies = [key for key in ("body", "json", "multipart") if key in spec]
        assert len(bodies) <= 1, f"{file.name}: at most one of {bodies}"
        body = b""
        if "body" in spec:
            body = data(spec["body"])
        elif "json" in spec:
            body = json.dumps(spec["json"]).encode()
        elif "multipart" in spec:
            body = multipart_body(spec["multipart"])
        status = spec["expect_status"]
        stored = spec.get("stored")
        return cls(
            name=file.stem,
            description=spec["description"],
            method=spec["method"],
            path=data(spec["path"]).decode("latin-1"),
            headers=headers,
            body=body,
            through=spec.get("through", "asgi"),
            expect_status=tuple(status) if isinstance(status, list) else (status,),
            expect_param=spec.get("expect_param", UNSET),
            expect_code=spec.get("expect_code", UNSET),
            expect_message=spec.get("expect_message"),
            answered_by=spec.get("answered_by", "app"),
            stored=None if stored is None else (stored["filename"], data(stored["content"])),
            same_as=spec.get("same_as", {}).get("path"),
            expect_listed=spec.get("expect_listed"),
        )


CASES = sorted(CORPUS.glob("*.json"))


def test_the_corpus_is_well_formed() -> None:
    assert len(CASES) >= 50
    for file in CASES:
        case = Case.load(file)
        assert case.description, file.name
        assert all(100 <= status < 500 for status in case.expect_status), file.name
        assert case.stored is None or case.expect_status == (200,), file.name
        assert case.answered_by in {"app", "server"}, file.name
        assert case.answered_by == "app" or case.through == "server", file.name


# -- sending a request ------------------------------------------------------------------------


@dataclass(frozen=True)
class Answer:
    status: int
    headers: list[tuple[str, str]]
    content: bytes

    def header(self, name: str) -> str | None:
        return next((value for key, value in self.headers if key == name), None)

    @property
    def text(self) -> str:
        return self.content.decode("utf-8", "replace")


def with_authorization(headers: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    if any(name.lower() == b"authorization" for name, _ in headers):
        return headers
    return [(b"Authorization", b"Bearer " + CALLER_KEY.encode()), *headers]


def send_slowly(port: int, request: bytes, piece: int = 4096) -> bytes:
    """Send ``request`` a piece at a time, stopping as soon as the server answers, then read the
    answer to its end: a server that refuses a request before reading all of it closes the
    connection, and the answer is only certain to arrive if the client has stopped sending."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        for start in range(0, len(request), piece):
            answered, _, _ = select.select([sock], [], [], 0.001)
            if answered:
                break
            try:
                sock.sendall(request[start : start + piece])
            except OSError:  # the server closed the connection: its answer is waiting
                break
        received = b""
        while True:
            try:
                chunk = sock.recv(65536)
            except ConnectionResetError:
                break
            if not chunk:
                break
            received += chunk
        return received


class _Received:
    def __init__(self, raw: bytes) -> None:
        self._file = io.BytesIO(raw)

    def makefile(self, *_: object) -> io.BytesIO:
        return self._file


def parse_answer(raw: bytes, method: str) -> Answer:
    response = http.client.HTTPResponse(_Received(raw), method=method)  # type: ignore[arg-type]
    response.begin()
    content = response.read()
    headers = [(name.lower(), value) for name, value in response.getheaders()]
    return Answer(response.status, headers, content)


@dataclass
class Deployment:
    """The app over local storage and SQLite in ``root``, and how to reach it."""

    root: Path
    client: httpx.AsyncClient
    port: int | None = None
    ids: dict[str, str] = field(default_factory=dict)

    async def send(
        self, method: str, path: str, headers: list[tuple[bytes, bytes]], body: bytes
    ) -> Answer:
        headers = with_authorization(headers)
        if self.port is None:
            response = await self.client.request(method, path, headers=headers, content=body)
            return Answer(
                response.status_code,
                [(name.lower(), value) for name, value in response.headers.multi_items()],
                response.content,
            )
        head = f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{self.port}\r\n".encode("latin-1")
        head += b"Connection: close\r\n"
        head += b"".join(name + b": " + value + b"\r\n" for name, value in headers)
        if body or method in {"POST", "PUT", "PATCH"}:
            head += f"Content-Length: {len(body)}\r\n".encode()
        raw = await anyio.to_thread.run_sync(send_slowly, self.port, head + b"\r\n" + body)
        return parse_answer(raw, method)

    def resolve(self, path: str) -> str:
        for name, value in self.ids.items():
            path = path.replace("{" + name + "}", value)
        return path


def service_over(root: Path) -> FilesService:
    return FilesService(
        LocalStorage(root / "blobs"),
        SQLMetadataStore(f"sqlite+aiosqlite:///{root / 'files.db'}"),
    )


@asynccontextmanager
async def deployment(through: str, root: Path) -> AsyncIterator[Deployment]:
    auth = api_key_auth(KEYS)
    if through == "server":
        # The service lives in the server's event loop, which closes it when the server stops.
        app = create_app(service_over(root), auth=auth, close_service=True)
        with serve(app) as server:
            async with httpx.AsyncClient(base_url=server.url) as client:
                yield Deployment(root, client, port=server.port)
        return
    async with service_over(root) as service:
        transport = httpx.ASGITransport(app=create_app(service, auth=auth))
        async with httpx.AsyncClient(transport=transport, base_url="http://files.test") as client:
            yield Deployment(root, client)


# -- what is there before and after -----------------------------------------------------------


async def create(api: Deployment, key: str, filename: str, content: bytes) -> str:
    response = await api.client.post(
        "/v1/files",
        files={"file": (filename, content)},
        data={"purpose": "user_data"},
        headers={"authorization": f"Bearer {key}"},
    )
    assert response.status_code == 200, response.text
    file_id: str = response.json()["id"]
    return file_id


async def seed(api: Deployment) -> None:
    """A file of another owner's, created first, then one of the caller's."""
    foreign = await create(api, OTHER_KEY, OTHER_FILENAME, OTHER_CONTENT)
    created_us = parse_file_id(foreign)
    assert created_us is not None
    api.ids.update(
        foreign_file_id=foreign,
        unknown_file_id=new_file_id(created_us),
        own_file_id=await create(api, CALLER_KEY, "mine.txt", b"the caller's bytes"),
    )


@dataclass(frozen=True)
class Snapshot:
    listed: list[dict[str, Any]]
    rows: dict[str, int]
    stored: list[str]


async def snapshot(api: Deployment) -> Snapshot:
    listing = await api.client.get(
        "/v1/files?order=asc", headers={"authorization": f"Bearer {CALLER_KEY}"}
    )
    assert listing.status_code == 200, listing.text
    with closing(sqlite3.connect(api.root / "files.db")) as db:
        rows = {
            table: db.execute(f"SELECT count(*) FROM {table}").fetchone()[0] for table in TABLES
        }
    stored = stored_files(api.root / "blobs")
    assert {path.name for path in api.root.iterdir()} <= {"blobs", *METADATA_FILES}
    return Snapshot(listing.json()["data"], rows, stored)


# -- the checks -------------------------------------------------------------------------------


def assert_openai_error(case: Case, answer: Answer) -> None:
    assert answer.header("content-type") == "application/json", answer.headers
    body = json.loads(answer.content)
    assert list(body) == ["error"], body
    error = body["error"]
    assert sorted(error) == ["code", "message", "param", "type"], error
    assert isinstance(error["message"], str)
    assert error["message"]
    assert error["type"] == "invalid_request_error", error
    assert error["param"] is None or isinstance(error["param"], str)
    assert error["code"] is None or isinstance(error["code"], str)
    if case.expect_param is not UNSET:
        assert error["param"] == case.expect_param, error
    if case.expect_code is not UNSET:
        assert error["code"] == case.expect_code, error
    if case.expect_message is not None:
        assert case.expect_message in error["message"], error
    assert "Traceback" not in error["message"]


def assert_nothing_leaks(api: Deployment, path: str, answer: Answer) -> None:
    shown = answer.content + repr(answer.headers).encode()
    assert OTHER_CONTENT not in shown
    assert OTHER_FILENAME.encode() not in shown
    # An error may echo the id the caller sent; nothing else ever shows another owner's id.
    if answer.status < 400 or api.ids["foreign_file_id"] not in path:
        assert api.ids["foreign_file_id"].encode() not in shown


async def assert_stored_exactly(
    api: Deployment, case: Case, before: Snapshot, after: Snapshot, answer: Answer
) -> None:
    assert case.stored is not None
    filename, content = case.stored
    created = json.loads(answer.content)
    assert created["filename"] == filename
    assert after.listed == [*before.listed, created]
    assert after.rows == {**before.rows, TABLES[0]: before.rows[TABLES[0]] + 1}
    new_keys = sorted(set(after.stored) - set(before.stored))
    assert len(new_keys) == 1, new_keys
    assert set(before.stored) <= set(after.stored)
    # Filenames are never paths: the bytes are stored under a random key, whatever the name.
    assert all(STORAGE_KEY.fullmatch(key) for key in after.stored), after.stored
    download = await api.client.get(
        f"/v1/files/{created['id']}/content", headers={"authorization": f"Bearer {CALLER_KEY}"}
    )
    assert download.content == content


async def assert_same_as_twin(api: Deployment, case: Case, answer: Answer) -> None:
    assert case.same_as is not None
    twin = await api.send(case.method, api.resolve(case.same_as), case.headers, case.body)
    foreign, unknown = api.ids["foreign_file_id"], api.ids["unknown_file_id"]

    def comparable(headers: list[tuple[str, str]]) -> list[tuple[str, str]]:
        return sorted(
            (name, value.replace(unknown, foreign))
            for name, value in headers
            if name not in REQUEST_SPECIFIC_HEADERS
        )

    assert answer.status == twin.status
    assert comparable(answer.headers) == comparable(twin.headers)
    assert answer.content == twin.content.replace(unknown.encode(), foreign.encode())


@pytest.mark.parametrize("file", CASES, ids=[file.stem for file in CASES])
async def test_hostile_request_gets_its_answer_and_leaves_nothing_behind(
    file: Path, tmp_path: Path
) -> None:
    case = Case.load(file)
    async with deployment(case.through, tmp_path) as api:
        await seed(api)
        before = await snapshot(api)
        # Finalize earlier tests' garbage now: a body nested past the recursion limit makes the
        # parser recurse to it, and a finalizer run by the collector down there fails for want
        # of stack, which pytest would blame on this test.
        gc.collect()
        path = api.resolve(case.path)
        answer = await api.send(case.method, path, case.headers, case.body)

        assert answer.status < 500, answer.text
        assert answer.status in case.expect_status, (case.description, answer.status, answer.text)
        if case.answered_by == "server":
            assert answer.content == SERVER_REFUSALS[answer.status], answer.content
        elif 400 <= answer.status < 500:
            assert_openai_error(case, answer)
        assert_nothing_leaks(api, path, answer)
        if case.same_as is not None:
            await assert_same_as_twin(api, case, answer)
        if case.expect_listed is not None:
            listed = [file["id"] for file in json.loads(answer.content)["data"]]
            assert listed == [api.resolve(file_id) for file_id in case.expect_listed]

        after = await snapshot(api)
        if case.stored is not None:
            await assert_stored_exactly(api, case, before, after, answer)
        else:
            assert after == before
