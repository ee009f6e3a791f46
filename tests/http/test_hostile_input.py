"""Malformed and hostile HTTP requests: each one is a 4xx in OpenAI's error shape that says what
to fix, and none of them leaves anything behind (no record, no blob, no temporary file)."""

from __future__ import annotations

import logging
import re
import sqlite3
from collections.abc import AsyncIterator
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, unquote

import httpx
import pytest
from starlette.types import Message, Scope

from openai_files import FilesService, LocalStorage, Policy, SQLMetadataStore, create_app
from openai_files.errors import shown
from openai_files.policy import EXPIRES_AFTER_MAX, EXPIRES_AFTER_MIN, OPENAI_UPLOAD_PURPOSES

from ..support import stored_files

pytestmark = pytest.mark.anyio

MAX_FILE_SIZE = 64 * 1024
BOUNDARY = "hostileInputBoundary0123456789"
MULTIPART = f"multipart/form-data; boundary={BOUNDARY}"
STORAGE_KEY = re.compile(r"[0-9a-f]{2}/[0-9a-f]{32}")
METADATA_FILES = ("files.db", "files.db-journal", "files.db-wal", "files.db-shm")


@pytest.fixture
async def service(tmp_path: Path) -> AsyncIterator[FilesService]:
    storage = LocalStorage(tmp_path / "blobs")
    metadata = SQLMetadataStore(f"sqlite+aiosqlite:///{tmp_path / 'files.db'}")
    # The tables exist before any request: `record_count` reads them even when a refused
    # upload never reached the store (a small file is recorded only once stored).
    await metadata.create_schema()
    # The edge's own checks, apart from what purposes' content rules refuse: batch files here
    # are any bytes, with any name.
    policy = Policy(max_file_size=MAX_FILE_SIZE, validation="off", file_types={})
    async with FilesService(storage, metadata, policy=policy) as service:
        yield service


@pytest.fixture
async def client(service: FilesService) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=create_app(service))
    async with httpx.AsyncClient(transport=transport, base_url="http://files.test") as client:
        yield client


# -- building bodies by hand, so that they can be wrong in every way --------------------------


def text(name: str, value: str | bytes) -> bytes:
    content = value.encode() if isinstance(value, str) else value
    return f'Content-Disposition: form-data; name="{name}"\r\n\r\n'.encode() + content


def upload(content: bytes = b'{"a": 1}\n', *, filename: bytes = b"input.jsonl") -> bytes:
    return (
        b'Content-Disposition: form-data; name="file"; filename="' + filename + b'"\r\n'
        b"Content-Type: application/octet-stream\r\n\r\n" + content
    )


def form(*parts: bytes, close: bool = True) -> bytes:
    delimiter = f"--{BOUNDARY}".encode()
    body = b"".join(delimiter + b"\r\n" + part + b"\r\n" for part in parts)
    return body + delimiter + b"--\r\n" if close else body


def quoted_filename(name: str) -> bytes:
    """``name`` as the inside of a quoted-string header parameter."""
    return name.replace("\\", "\\\\").replace('"', '\\"').encode()


# -- what every refusal must look like --------------------------------------------------------


def assert_openai_error(
    response: httpx.Response,
    status: int,
    *,
    param: str | None,
    code: str | None,
    says: str,
) -> dict[str, object]:
    assert response.status_code == status, response.text
    body = response.json()
    assert list(body) == ["error"]
    error = body["error"]
    assert sorted(error) == ["code", "message", "param", "type"]
    assert isinstance(error["message"], str)
    assert isinstance(error["type"], str)
    assert (error["param"], error["code"]) == (param, code), error
    assert says in error["message"], error["message"]
    assert "Traceback" not in response.text
    return dict(error)


async def assert_nothing_stored(client: httpx.AsyncClient, tmp_path: Path) -> None:
    listing = await client.get("/v1/files")
    assert listing.status_code == 200
    assert listing.json()["data"] == []
    assert stored_files(tmp_path / "blobs") == []
    assert record_count(tmp_path) == 0


def record_count(tmp_path: Path) -> int:
    """Every file record in the database, whatever its state (pending ones included)."""
    with closing(sqlite3.connect(tmp_path / "files.db")) as db:
        count: int = db.execute("SELECT count(*) FROM openai_files_files").fetchone()[0]
        return count


# -- uploads -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Refused:
    """A request body, and the 400 it must get: ``param``, ``code`` and a fragment of advice."""

    body: bytes
    param: str | None
    says: str
    code: str = "invalid_request"


MALFORMED = "invalid_multipart"
PURPOSE_LIST = ", ".join(repr(p) for p in OPENAI_UPLOAD_PURPOSES)

UPLOADS = {
    "missing-file": Refused(
        form(text("purpose", "batch")), "file", "Missing required parameter: 'file'"
    ),
    "missing-purpose": Refused(form(upload()), "purpose", "Missing required parameter: 'purpose'"),
    "empty-purpose-after-file": Refused(
        form(upload(), text("purpose", "")), "purpose", "Missing required parameter: 'purpose'"
    ),
    "invalid-purpose-before-file": Refused(
        form(text("purpose", "nonsense"), upload()), "purpose", PURPOSE_LIST
    ),
    "invalid-purpose-after-file": Refused(
        form(upload(b"x" * 50_000), text("purpose", "nonsense")), "purpose", PURPOSE_LIST
    ),
    "system-purpose-after-file": Refused(
        form(upload(), text("purpose", "batch_output")), "purpose", PURPOSE_LIST
    ),
    "file-field-without-filename": Refused(
        form(text("file", "just text"), text("purpose", "batch")),
        "file",
        "must be a file part with a filename",
    ),
    "empty-filename": Refused(
        form(text("purpose", "batch"), upload(filename=b"")), "file", "must have a filename"
    ),
    "filename-with-nul": Refused(
        form(text("purpose", "batch"), upload(filename=b"a\x00b.jsonl")), "file", "rename"
    ),
    "filename-with-lf": Refused(
        form(text("purpose", "batch"), upload(filename=b"a\nb.jsonl")), "file", "rename"
    ),
    "filename-with-tab-after-file": Refused(
        form(upload(filename=b"a\tb.jsonl"), text("purpose", "batch")), "file", "rename"
    ),
    "filename-with-cr": Refused(
        form(text("purpose", "batch"), upload(filename=b"a\rb.jsonl")),
        None,
        "Malformed multipart body",
        MALFORMED,
    ),
    "filename-with-crlf": Refused(
        form(text("purpose", "batch"), upload(filename=b"a\r\nX-Evil: 1\r\nb.jsonl")),
        None,
        "Malformed multipart body",
        MALFORMED,
    ),
    "filename-of-2kb": Refused(
        form(text("purpose", "batch"), upload(filename=b"a" * 2048)), "file", "the maximum is 1024"
    ),
    "part-header-over-8kb": Refused(
        form(text("purpose", "batch"), upload(filename=b"h" * 9000)),
        None,
        "Malformed multipart body",
        MALFORMED,
    ),
    "filename-not-utf8": Refused(
        form(text("purpose", "batch"), upload(filename=b"caf\xe9.jsonl")),
        None,
        "not valid UTF-8",
        MALFORMED,
    ),
    "two-file-parts": Refused(
        form(text("purpose", "batch"), upload(), upload(filename=b"second.jsonl")),
        "file",
        "Send exactly one 'file' part",
    ),
    "two-file-parts-purpose-last": Refused(
        form(upload(), upload(filename=b"second.jsonl"), text("purpose", "batch")),
        "file",
        "Send exactly one 'file' part",
    ),
    "purpose-repeated": Refused(
        form(text("purpose", "batch"), text("purpose", "batch"), upload()),
        "purpose",
        "sent more than once",
    ),
    "purpose-repeated-after-file": Refused(
        form(text("purpose", "batch"), upload(), text("purpose", "vision")),
        "purpose",
        "sent more than once",
    ),
    "purpose-not-utf8": Refused(
        form(upload(), text("purpose", b"batch\xff")), "purpose", "not valid UTF-8", MALFORMED
    ),
    "purpose-over-field-size": Refused(
        form(text("purpose", "b" * (64 * 1024 + 1)), upload()), "purpose", "longer than", MALFORMED
    ),
    "too-many-parts": Refused(
        form(*[text(f"f{i}", "v") for i in range(65)], upload(), text("purpose", "batch")),
        None,
        "send only 'file', 'purpose'",
        MALFORMED,
    ),
    "part-without-name": Refused(
        form(text("purpose", "batch"), b'Content-Disposition: form-data; filename="a"\r\n\r\nx'),
        None,
        "Content-Disposition: form-data; name=",
        MALFORMED,
    ),
    "truncated-inside-file": Refused(
        form(text("purpose", "batch"), upload(b"y" * 30_000), close=False)[:-10],
        None,
        "closing boundary",
        MALFORMED,
    ),
    "truncated-after-file": Refused(
        form(upload(b"y" * 30_000), text("purpose", "batch"), close=False),
        None,
        "closing boundary",
        MALFORMED,
    ),
    "not-multipart-at-all": Refused(b"hello, world", None, "Malformed multipart body", MALFORMED),
    "empty-body": Refused(b"", None, "closing boundary", MALFORMED),
    "other-boundary-in-body": Refused(
        form(upload()).replace(BOUNDARY.encode(), b"anotherBoundary"),
        None,
        "Malformed multipart body",
        MALFORMED,
    ),
}


@pytest.mark.parametrize("case", UPLOADS.values(), ids=UPLOADS)
async def test_malformed_upload_is_400_in_openai_shape_and_stores_nothing(
    client: httpx.AsyncClient, tmp_path: Path, case: Refused
) -> None:
    response = await client.post(
        "/v1/files", content=case.body, headers={"content-type": MULTIPART}
    )
    error = assert_openai_error(response, 400, param=case.param, code=case.code, says=case.says)
    assert error["type"] == "invalid_request_error"
    await assert_nothing_stored(client, tmp_path)


async def test_invalid_purpose_message_lists_every_valid_purpose(
    client: httpx.AsyncClient,
) -> None:
    response = await client.post(
        "/v1/files",
        content=form(text("purpose", "nonsense"), upload()),
        headers={"content-type": MULTIPART},
    )
    message = str(response.json()["error"]["message"])
    assert "'nonsense'" in message
    for purpose in OPENAI_UPLOAD_PURPOSES:
        assert repr(purpose) in message


WRONG_CONTENT_TYPES = {
    "application-json": ("application/json", b'{"purpose": "batch"}', "multipart/form-data"),
    "text-plain": ("text/plain", b"purpose=batch", "multipart/form-data"),
    "urlencoded": ("application/x-www-form-urlencoded", b"purpose=batch", "multipart/form-data"),
    "none": (None, form(text("purpose", "batch"), upload()), "multipart/form-data"),
    "multipart-mixed": (f"multipart/mixed; boundary={BOUNDARY}", form(upload()), "form-data"),
    "no-boundary": ("multipart/form-data", form(upload()), "no boundary"),
    "empty-boundary": ("multipart/form-data; boundary=", form(upload()), "no boundary"),
    "boundary-over-70": ("multipart/form-data; boundary=" + "b" * 71, b"", "longer than 70"),
}


@pytest.mark.parametrize(
    ("content_type", "body", "says"), WRONG_CONTENT_TYPES.values(), ids=list(WRONG_CONTENT_TYPES)
)
async def test_upload_that_is_not_multipart_with_a_boundary_is_400(
    client: httpx.AsyncClient, tmp_path: Path, content_type: str | None, body: bytes, says: str
) -> None:
    headers = {} if content_type is None else {"content-type": content_type}
    response = await client.post("/v1/files", content=body, headers=headers)
    assert_openai_error(response, 400, param=None, code=MALFORMED, says=says)
    await assert_nothing_stored(client, tmp_path)


SECONDS = "expires_after[seconds]"
ANCHOR = "expires_after[anchor]"
JSON = "expires_after"
RANGE = f"between {EXPIRES_AFTER_MIN} and {EXPIRES_AFTER_MAX}"
NOT_INTEGER = "must be an integer number of seconds"
NOT_OBJECT = "must be a JSON object like"


def expiry_fields(anchor: str | None, seconds: str | None) -> list[bytes]:
    fields = [] if anchor is None else [text(ANCHOR, anchor)]
    return fields + ([] if seconds is None else [text(SECONDS, seconds)])


EXPIRIES: dict[str, tuple[list[bytes], str, str]] = {
    "seconds-3599": (expiry_fields("created_at", "3599"), SECONDS, RANGE),
    "seconds-2592001": (expiry_fields("created_at", "2592001"), SECONDS, RANGE),
    "seconds-negative": (expiry_fields("created_at", "-3600"), SECONDS, RANGE),
    "seconds-zero": (expiry_fields("created_at", "0"), SECONDS, RANGE),
    "seconds-huge": (expiry_fields("created_at", "9" * 30), SECONDS, "seconds"),
    "seconds-5000-digits": (expiry_fields("created_at", "9" * 5000), SECONDS, "seconds"),
    "seconds-word": (expiry_fields("created_at", "an hour"), SECONDS, NOT_INTEGER),
    "seconds-fraction": (expiry_fields("created_at", "3600.5"), SECONDS, NOT_INTEGER),
    "seconds-empty": (expiry_fields("created_at", ""), SECONDS, NOT_INTEGER),
    "seconds-missing": (expiry_fields("created_at", None), SECONDS, NOT_INTEGER),
    "seconds-superscript-digit": (expiry_fields("created_at", "²"), SECONDS, NOT_INTEGER),
    "seconds-double-minus": (expiry_fields("created_at", "--3600"), SECONDS, NOT_INTEGER),
    "seconds-arabic-indic-digits": (expiry_fields("created_at", "٣٦٠٠"), SECONDS, NOT_INTEGER),
    "seconds-with-underscore": (expiry_fields("created_at", "3_600"), SECONDS, NOT_INTEGER),
    "anchor-wrong": (expiry_fields("last_active_at", "3600"), ANCHOR, "must be 'created_at'"),
    "anchor-missing": (expiry_fields(None, "3600"), ANCHOR, "must be 'created_at'"),
    "json-not-json": ([text(JSON, "{anchor: created_at}")], JSON, NOT_OBJECT),
    "json-array": ([text(JSON, "[3600]")], JSON, NOT_OBJECT),
    "json-string": ([text(JSON, '"3600"')], JSON, NOT_OBJECT),
    "json-deeply-nested": ([text(JSON, "[" * 60_000)], JSON, NOT_OBJECT),
    "json-5000-digit-seconds": (
        [text(JSON, '{"anchor": "created_at", "seconds": ' + "9" * 5000 + "}")],
        JSON,
        NOT_OBJECT,
    ),
    "json-seconds-out-of-range": (
        [text(JSON, '{"anchor": "created_at", "seconds": 3599}')],
        SECONDS,
        RANGE,
    ),
    "json-seconds-infinite": (
        [text(JSON, '{"anchor": "created_at", "seconds": 1e400}')],
        SECONDS,
        NOT_INTEGER,
    ),
    "json-seconds-boolean": (
        [text(JSON, '{"anchor": "created_at", "seconds": true}')],
        SECONDS,
        NOT_INTEGER,
    ),
    "json-anchor-wrong": (
        [text(JSON, '{"anchor": "now", "seconds": 3600}')],
        ANCHOR,
        "must be 'created_at'",
    ),
}


@pytest.mark.parametrize("placement", ["before-file", "after-file"])
@pytest.mark.parametrize(("fields", "param", "says"), EXPIRIES.values(), ids=list(EXPIRIES))
async def test_bad_expires_after_is_400_naming_the_parameter(
    client: httpx.AsyncClient,
    tmp_path: Path,
    placement: str,
    fields: list[bytes],
    param: str,
    says: str,
) -> None:
    file_and_purpose = [upload(b"z" * 20_000), text("purpose", "user_data")]
    before = placement == "before-file"
    parts = [*fields, *file_and_purpose] if before else [*file_and_purpose, *fields]
    response = await client.post(
        "/v1/files", content=form(*parts), headers={"content-type": MULTIPART}
    )
    assert_openai_error(response, 400, param=param, code="invalid_request", says=says)
    await assert_nothing_stored(client, tmp_path)


# -- sizes -------------------------------------------------------------------------------------

TOO_LARGE = f"the maximum size is {MAX_FILE_SIZE} bytes"


async def test_file_of_exactly_the_maximum_size_is_accepted(client: httpx.AsyncClient) -> None:
    body = form(text("purpose", "batch"), upload(b"m" * MAX_FILE_SIZE))
    response = await client.post("/v1/files", content=body, headers={"content-type": MULTIPART})
    assert response.status_code == 200, response.text
    assert response.json()["bytes"] == MAX_FILE_SIZE


@pytest.mark.parametrize("purpose_first", [True, False], ids=["purpose-first", "file-first"])
async def test_file_one_byte_over_the_maximum_is_413_and_stores_nothing(
    client: httpx.AsyncClient, tmp_path: Path, purpose_first: bool
) -> None:
    parts = [text("purpose", "batch"), upload(b"m" * (MAX_FILE_SIZE + 1))]
    body = form(*(parts if purpose_first else parts[::-1]))
    response = await client.post("/v1/files", content=body, headers={"content-type": MULTIPART})
    assert_openai_error(response, 413, param="file", code="file_too_large", says=TOO_LARGE)
    await assert_nothing_stored(client, tmp_path)


async def test_form_stuffed_with_fields_past_the_body_allowance_is_413_and_stores_nothing(
    client: httpx.AsyncClient, tmp_path: Path
) -> None:
    stuffing = [text(f"padding{i}", "p" * 60_000) for i in range(40)]
    body = form(upload(b"small"), *stuffing, text("purpose", "batch"))
    response = await client.post("/v1/files", content=body, headers={"content-type": MULTIPART})
    assert_openai_error(
        response, 413, param=None, code="file_too_large", says="request body is too large"
    )
    await assert_nothing_stored(client, tmp_path)


class CountingBody:
    """A chunked request body (no Content-Length) that counts how much of it was read."""

    def __init__(self, head: bytes, *, chunk: bytes, chunks: int) -> None:
        self.head, self.chunk, self.chunks = head, chunk, chunks
        self.sent = 0

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for piece in [self.head, *[self.chunk] * self.chunks]:
            self.sent += len(piece)
            yield piece


async def test_chunked_body_is_cut_off_as_soon_as_the_file_passes_the_maximum(
    client: httpx.AsyncClient, tmp_path: Path
) -> None:
    head = f"--{BOUNDARY}\r\n".encode() + upload(b"")
    body = CountingBody(head, chunk=b"c" * 4096, chunks=100 * MAX_FILE_SIZE // 4096)
    response = await client.post("/v1/files", content=body, headers={"content-type": MULTIPART})
    assert "content-length" not in response.request.headers
    assert_openai_error(response, 413, param="file", code="file_too_large", says=TOO_LARGE)
    assert body.sent <= len(head) + MAX_FILE_SIZE + 2 * 4096
    await assert_nothing_stored(client, tmp_path)


async def test_declared_content_length_over_the_limit_is_413_before_the_body_is_read(
    client: httpx.AsyncClient, tmp_path: Path
) -> None:
    body = CountingBody(f"--{BOUNDARY}\r\n".encode(), chunk=b"c" * 4096, chunks=10)
    headers = {"content-type": MULTIPART, "content-length": str(10**12)}
    response = await client.post("/v1/files", content=body, headers=headers)
    assert_openai_error(
        response, 413, param=None, code="file_too_large", says="request body is too large"
    )
    assert body.sent == 0
    await assert_nothing_stored(client, tmp_path)


async def test_client_disconnecting_mid_upload_leaves_nothing_and_is_no_server_error(
    service: FilesService, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    head = f"--{BOUNDARY}\r\n".encode() + upload(b"d" * 20_000)
    messages: list[Message] = [{"type": "http.request", "body": head, "more_body": True}]
    sent: list[Message] = []

    async def receive() -> Message:
        return messages.pop(0) if messages else {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        sent.append(message)

    scope: Scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "path": "/v1/files",
        "raw_path": b"/v1/files",
        "query_string": b"",
        "root_path": "",
        "headers": [(b"content-type", MULTIPART.encode())],
        "client": ("127.0.0.1", 50000),
        "server": ("files.test", 80),
    }
    await create_app(service)(scope, receive, send)
    assert sent[0]["type"] == "http.response.start"
    assert 400 <= sent[0]["status"] < 500
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert stored_files(tmp_path / "blobs") == []
    assert record_count(tmp_path) == 0


# -- listing -------------------------------------------------------------------------------------

LIST_QUERIES = {
    "limit-0": ({"limit": "0"}, "limit", "between 1 and 10000"),
    "limit-10001": ({"limit": "10001"}, "limit", "between 1 and 10000"),
    "limit-negative": ({"limit": "-1"}, "limit", "between 1 and 10000"),
    "limit-word": ({"limit": "abc"}, "limit", "limit must be an integer"),
    "limit-fraction": ({"limit": "1.5"}, "limit", "limit must be an integer"),
    "limit-exponent": ({"limit": "1e3"}, "limit", "limit must be an integer"),
    "limit-superscript-digit": ({"limit": "²"}, "limit", "limit must be an integer"),
    "limit-arabic-indic-digit": ({"limit": "٣"}, "limit", "limit must be an integer"),
    "limit-with-underscore": ({"limit": "1_0"}, "limit", "limit must be an integer"),
    "limit-5000-digits": ({"limit": "9" * 5000}, "limit", "limit"),
    "order-sideways": ({"order": "sideways"}, "order", "order must be 'asc' or 'desc'"),
    "order-injection": ({"order": "desc; DROP TABLE openai_files_files"}, "order", "'asc'"),
    "after-garbage": ({"after": "garbage"}, "after", "file id from a previous page"),
    "after-injection": ({"after": "' OR 1=1 --"}, "after", "file id from a previous page"),
    "after-wrong-alphabet": ({"after": "file-" + "!" * 24}, "after", "file id"),
    "after-10000-chars": ({"after": "f" * 10_000}, "after", "file id from a previous page"),
}


@pytest.mark.parametrize(("query", "param", "says"), LIST_QUERIES.values(), ids=list(LIST_QUERIES))
async def test_bad_list_parameter_is_400_naming_the_parameter(
    client: httpx.AsyncClient, query: dict[str, str], param: str, says: str
) -> None:
    response = await client.get("/v1/files", params=query)
    error = assert_openai_error(response, 400, param=param, code="invalid_request", says=says)
    assert len(str(error["message"])) < 500


async def test_purpose_filter_that_looks_like_sql_matches_nothing(
    client: httpx.AsyncClient,
) -> None:
    created = await client.post(
        "/v1/files", files={"file": ("a.jsonl", b"{}")}, data={"purpose": "batch"}
    )
    assert created.status_code == 200
    listing = await client.get("/v1/files", params={"purpose": "' OR 1=1 --"})
    assert listing.status_code == 200
    assert listing.json()["data"] == []


# -- ids -----------------------------------------------------------------------------------------

HOSTILE_IDS = {
    "unknown-well-formed": "file-" + "0" * 24,
    "unknown-short": "file-abc123",
    "sql-injection": "' OR 1=1 --",
    "sql-injection-union": "x' UNION SELECT * FROM openai_files_files --",
    "format-string": "%s%n{0}",
    "10000-chars": "f" * 10_000,
    "crlf-header-injection": "file-x\r\nSet-Cookie: stolen=1",
    "nul": "file-\x00",
    "emoji": "file-😀",
}
PATH_LIKE_ID = "../../etc/passwd"
ID_ROUTES = [("GET", ""), ("GET", "/content"), ("DELETE", "")]


@pytest.fixture
async def secret(client: httpx.AsyncClient) -> dict[str, object]:
    """A real file, so that a request that leaked or deleted another file would show it."""
    response = await client.post(
        "/v1/files", files={"file": ("secret.txt", b"top secret bytes")}, data={"purpose": "vision"}
    )
    assert response.status_code == 200
    created: dict[str, object] = response.json()
    return created


async def assert_secret_untouched(
    client: httpx.AsyncClient, secret: dict[str, object], response: httpx.Response
) -> None:
    assert "top secret" not in response.text
    assert str(secret["id"]) not in response.text
    assert "set-cookie" not in response.headers
    listing = await client.get("/v1/files")
    assert [f["id"] for f in listing.json()["data"]] == [secret["id"]]
    content = await client.get(f"/v1/files/{secret['id']}/content")
    assert content.content == b"top secret bytes"


@pytest.mark.parametrize(("method", "suffix"), ID_ROUTES, ids=["retrieve", "content", "delete"])
@pytest.mark.parametrize("file_id", HOSTILE_IDS.values(), ids=list(HOSTILE_IDS))
async def test_unknown_or_hostile_id_is_404_no_such_file_and_leaks_nothing(
    client: httpx.AsyncClient,
    secret: dict[str, object],
    file_id: str,
    method: str,
    suffix: str,
) -> None:
    response = await client.request(method, f"/v1/files/{quote(file_id, safe='')}{suffix}")
    # The id is repeated escaped and cut short, however long or odd it is.
    message = f"No such File object: {shown(file_id, quoted=False)}"
    assert_openai_error(response, 404, param="id", code="file_not_found", says=message)
    assert response.json()["error"]["message"] == message
    await assert_secret_untouched(client, secret, response)


@pytest.mark.parametrize(("method", "suffix"), ID_ROUTES, ids=["retrieve", "content", "delete"])
async def test_path_like_id_is_404_and_never_reaches_storage(
    client: httpx.AsyncClient, secret: dict[str, object], method: str, suffix: str
) -> None:
    # The server decodes %2F before routing, so no /files/{file_id} route matches.
    response = await client.request(method, f"/v1/files/{quote(PATH_LIKE_ID, safe='')}{suffix}")
    assert_openai_error(response, 404, param=None, code=None, says="Unknown path")
    assert "root:" not in response.text
    await assert_secret_untouched(client, secret, response)


# -- routes and methods ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "path", ["/v1/nothing", "/v2/files", "/v1/files/file-x/content/extra", "/v1/file"]
)
async def test_unknown_route_is_404_in_openai_shape(client: httpx.AsyncClient, path: str) -> None:
    response = await client.get(path)
    assert_openai_error(response, 404, param=None, code=None, says=f"Unknown path: {path}")


WRONG_METHODS = [
    ("PUT", "/v1/files"),
    ("DELETE", "/v1/files"),
    ("PATCH", "/files"),
    ("PUT", "/v1/files/file-x"),
    ("POST", "/v1/files/file-x"),
    ("POST", "/v1/files/file-x/content"),
]


@pytest.mark.parametrize(("method", "path"), WRONG_METHODS)
async def test_wrong_method_is_405_in_openai_shape(
    client: httpx.AsyncClient, tmp_path: Path, method: str, path: str
) -> None:
    response = await client.request(method, path)
    says = f"Method {method} is not allowed on {path}"
    assert_openai_error(response, 405, param=None, code=None, says=says)
    await assert_nothing_stored(client, tmp_path)


@pytest.mark.parametrize(
    ("path", "allowed"),
    [("/v1/files", {"GET", "HEAD", "POST"}), ("/v1/files/file-x", {"GET", "HEAD", "DELETE"})],
)
async def test_405_allow_header_lists_every_method_the_path_accepts(
    client: httpx.AsyncClient, path: str, allowed: set[str]
) -> None:
    response = await client.request("PUT", path)
    assert response.status_code == 405
    assert {m.strip() for m in response.headers["allow"].split(",")} == allowed


# -- filenames that look like paths or headers ----------------------------------------------

ODD_FILENAMES = [
    'say "hi" it\'s.jsonl',
    "../../etc/passwd",
    "..\\..\\boot.ini",
    "/etc/shadow",
    "%2e%2e%2fsecret.txt",
    "a; filename*=UTF-8''evil.txt",
    "résumé 履歴書 📄.jsonl",
    '../"quoted"/naïve\\path%0d%0a.txt',
    "a" * 1024,
]


def assert_safe_content_disposition(header: str, filename: str) -> None:
    assert "\r" not in header
    assert "\n" not in header
    match = re.fullmatch(
        r"attachment; filename=\"([^\"\\]*)\"; filename\*=UTF-8''([^'\s;\"]*)", header
    )
    assert match, header
    fallback, encoded = match.groups()
    assert all(0x20 <= ord(char) < 0x7F for char in fallback)
    assert re.fullmatch(r"[A-Za-z0-9%._~!*()-]*", encoded), encoded
    assert unquote(encoded, errors="strict") == filename


def assert_only_random_keys_stored(tmp_path: Path, count: int) -> None:
    keys = stored_files(tmp_path / "blobs")
    assert len(keys) == count
    assert all(STORAGE_KEY.fullmatch(key) for key in keys), keys
    assert {p.name for p in tmp_path.iterdir()} <= {"blobs", *METADATA_FILES}


@pytest.mark.parametrize("filename", ODD_FILENAMES, ids=range(len(ODD_FILENAMES)))
async def test_odd_filename_is_kept_exactly_and_never_becomes_a_path(
    client: httpx.AsyncClient, tmp_path: Path, filename: str
) -> None:
    content = b"line one\r\nline two\n"
    body = form(text("purpose", "user_data"), upload(content, filename=quoted_filename(filename)))
    created = await client.post("/v1/files", content=body, headers={"content-type": MULTIPART})
    assert created.status_code == 200, created.text
    file_id = created.json()["id"]
    assert created.json()["filename"] == filename
    assert (await client.get(f"/v1/files/{file_id}")).json()["filename"] == filename
    listed = (await client.get("/v1/files")).json()["data"]
    assert [(f["id"], f["filename"]) for f in listed] == [(file_id, filename)]
    assert_only_random_keys_stored(tmp_path, 1)

    download = await client.get(f"/v1/files/{file_id}/content")
    assert download.status_code == 200
    assert download.content == content
    assert_safe_content_disposition(download.headers["content-disposition"], filename)


@pytest.mark.parametrize("filename", ["../../etc/passwd", "résumé 履歴書 📄.jsonl"])
async def test_odd_filename_sent_as_an_http_client_sends_it_is_kept_exactly(
    client: httpx.AsyncClient, tmp_path: Path, filename: str
) -> None:
    created = await client.post(
        "/v1/files", files={"file": (filename, b"{}")}, data={"purpose": "batch"}
    )
    assert created.status_code == 200, created.text
    assert created.json()["filename"] == filename
    assert_only_random_keys_stored(tmp_path, 1)
    download = await client.get(f"/v1/files/{created.json()['id']}/content")
    assert_safe_content_disposition(download.headers["content-disposition"], filename)
