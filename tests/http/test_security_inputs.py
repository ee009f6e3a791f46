"""Every bad string a client sends is a 4xx in OpenAI's shape, on every SQL backend.

Tried over HTTP against the app under uvicorn, on SQLite, PostgreSQL and MariaDB: a string no
column can hold (NUL, an unpaired surrogate, too long) never reaches a driver, so it is never
a 500 nor a 503 ``backend_unavailable`` that SDKs would retry; an id that cannot exist is 404
as an unknown one; a media type is a media type; an error message repeats at most 64
characters of what was sent; a filename holds no control or bidi character. None of these
requests leaves a record, a part or stored bytes behind.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from openai_files import (
    FilesService,
    LocalStorage,
    Policy,
    SQLMetadataStore,
    create_app,
)
from openai_files.errors import BackendUnavailable, InvalidRequest
from openai_files.metadata.base import FileRecord
from openai_files.service import LIST_BATCH

from ..databases import drop_tables, require_database, unique_prefix
from ..support import serve, stored_files

pytestmark = pytest.mark.anyio

BOUNDARY = "securityInputsBoundary0123456789"
BACKENDS = ["sqlite", "postgresql", "mariadb"]
LONG = 60_000  # as long as a URL an HTTP client sends


@dataclass
class Deployment:
    """The app under uvicorn over local storage and one SQL database, and a client for it."""

    client: httpx.AsyncClient
    root: Path
    url: str
    prefix: str

    async def rows(self) -> dict[str, int]:
        """How many rows each table holding what clients create has."""
        store = SQLMetadataStore(self.url, table_prefix=self.prefix)
        tables = store.tables
        try:
            async with store.engine.connect() as connection:
                return {
                    table.name: (await connection.execute(select(func.count()).select_from(table)))
                    .scalars()
                    .one()
                    for table in (tables.files, tables.uploads, tables.parts, tables.idempotency)
                }
        finally:
            await store.aclose()

    async def state(self) -> tuple[dict[str, int], list[str]]:
        return await self.rows(), stored_files(self.root / "blobs")


def database_url(backend: str, root: Path) -> str:
    if backend == "sqlite":
        return f"sqlite+aiosqlite:///{root / 'files.db'}"
    return require_database(backend)


@asynccontextmanager
async def deploy(backend: str, root: Path, policy: Policy) -> AsyncIterator[Deployment]:
    url, prefix = database_url(backend, root), unique_prefix()
    service = FilesService(
        LocalStorage(root / "blobs"), SQLMetadataStore(url, table_prefix=prefix), policy=policy
    )
    # The service lives in the server's event loop, which closes it when the server stops.
    try:
        with serve(create_app(service, close_service=True)) as server:
            async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
                assert (await client.get("/v1/files")).status_code == 200  # creates the tables
                yield Deployment(client, root, url, prefix)
    finally:
        await drop_tables(url, prefix)


@pytest.fixture(params=BACKENDS)
async def api(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Deployment]:
    """A deployment on each SQL backend, serving downloads with the declared media type."""
    async with deploy(request.param, tmp_path, Policy(keep_media_type=True)) as deployment:
        yield deployment


@pytest.fixture
async def sqlite_api(tmp_path: Path) -> AsyncIterator[Deployment]:
    """A deployment on SQLite, for checks that do not depend on the database."""
    async with deploy("sqlite", tmp_path, Policy(keep_media_type=True)) as deployment:
        yield deployment


# -- what every refusal must look like --------------------------------------------------------


def assert_refused(
    response: httpx.Response,
    status: int,
    *,
    param: str | None,
    code: str | None = None,
) -> dict[str, Any]:
    """A 4xx in OpenAI's error shape, naming ``param``, short, with no traceback."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert list(body) == ["error"]
    error: dict[str, Any] = body["error"]
    assert sorted(error) == ["code", "message", "param", "type"]
    assert error["type"] == "invalid_request_error", error
    assert error["param"] == param, error
    if code is not None:
        assert error["code"] == code, error
    assert "Traceback" not in response.text
    assert len(response.content) < 1024, len(response.content)
    return error


async def upload_form(
    api: Deployment, file_headers: bytes, *, headers: dict[str, bytes] | None = None
) -> httpx.Response:
    """A multipart upload whose file part has exactly ``file_headers``."""
    delimiter = f"--{BOUNDARY}".encode()
    body = (
        delimiter + b'\r\nContent-Disposition: form-data; name="purpose"\r\n\r\nuser_data\r\n'
        + delimiter + b"\r\n" + file_headers + b"\r\n\r\nsome bytes\r\n"
        + delimiter + b"--\r\n"
    )  # fmt: skip
    return await api.client.post(
        "/v1/files",
        content=body,
        headers=[
            (b"content-type", f"multipart/form-data; boundary={BOUNDARY}".encode()),
            *((name.encode(), value) for name, value in (headers or {}).items()),
        ],
    )


def file_part(filename: bytes = b"notes.txt", content_type: bytes | None = None) -> bytes:
    headers = b'Content-Disposition: form-data; name="file"; filename="' + filename + b'"'
    if content_type is not None:
        headers += b"\r\nContent-Type: " + content_type
    return headers


def create_upload(**fields: Any) -> dict[str, Any]:
    return {
        "filename": "notes.txt",
        "purpose": "user_data",
        "bytes": 4,
        "mime_type": "text/plain",
        **fields,
    }


async def pending_upload(api: Deployment) -> str:
    created = await api.client.post("/v1/uploads", json=create_upload())
    assert created.status_code == 200, created.text
    upload_id: str = created.json()["id"]
    return upload_id


# -- finding 6: a string no column can hold never reaches a driver ----------------------------

IMPOSSIBLE_IDS = {
    "nul": "file-abc%00def",
    "longer-than-the-id-column": "file-" + "a" * 60,
    "non-ascii": "file-%C3%A9t%C3%A9",
    "control": "file-%01",
}
FILE_ROUTES = [("GET", "/v1/files/{}"), ("GET", "/v1/files/{}/content"), ("DELETE", "/v1/files/{}")]


@pytest.mark.parametrize("file_id", IMPOSSIBLE_IDS.values(), ids=list(IMPOSSIBLE_IDS))
async def test_a_file_id_that_cannot_exist_is_404_as_an_unknown_one(
    api: Deployment, file_id: str
) -> None:
    before = await api.state()
    unknown = "file-" + "0" * 24
    for method, route in FILE_ROUTES:
        response = await api.client.request(method, route.format(file_id))
        error = assert_refused(response, 404, param="id", code="file_not_found")
        twin = await api.client.request(method, route.format(unknown))
        assert error["message"].startswith("No such File object: ")
        assert twin.status_code == 404
    assert await api.state() == before


UPLOAD_ROUTES = [
    ("POST", "/v1/uploads/{}/cancel", None),
    ("POST", "/v1/uploads/{}/complete", {"part_ids": ["part_x"]}),
]


@pytest.mark.parametrize("upload_id", IMPOSSIBLE_IDS.values(), ids=list(IMPOSSIBLE_IDS))
async def test_an_upload_id_that_cannot_exist_is_404_as_an_unknown_one(
    api: Deployment, upload_id: str
) -> None:
    upload_id = upload_id.replace("file-", "upload_")
    before = await api.state()
    for method, route, body in UPLOAD_ROUTES:
        response = await api.client.request(method, route.format(upload_id), json=body)
        assert_refused(response, 404, param="upload_id", code="upload_not_found")
    parts = await api.client.post(
        f"/v1/uploads/{upload_id}/parts", files={"data": ("blob", b"abcd")}
    )
    assert_refused(parts, 404, param="upload_id", code="upload_not_found")
    assert await api.state() == before


@pytest.mark.parametrize(
    "purpose",
    ["user%00data", "a" * 65, "user%01data", "user%C2%85data"],
    ids=["nul", "longer-than-a-purpose", "control", "c1-control"],
)
async def test_a_purpose_filter_no_file_can_have_is_400(api: Deployment, purpose: str) -> None:
    response = await api.client.get(f"/v1/files?purpose={purpose}")
    error = assert_refused(response, 400, param="purpose")
    assert "purpose" in error["message"]


async def test_a_good_purpose_filter_still_lists(api: Deployment) -> None:
    created = await api.client.post(
        "/v1/files", files={"file": ("a.txt", b"a")}, data={"purpose": "user_data"}
    )
    assert created.status_code == 200, created.text
    listing = await api.client.get("/v1/files?purpose=user_data")
    assert [f["id"] for f in listing.json()["data"]] == [created.json()["id"]]


BAD_CONTENT_TYPES = {
    "nul": b"text/pl\x00ain",
    "longer-than-the-column": b"text/" + b"a" * 300,
    "not-latin-1-utf-8": "text/pl\u00e4in".encode(),
    "no-subtype": b"text",
    "c1-control": b"text/plain\x85",
}


@pytest.mark.parametrize("content_type", BAD_CONTENT_TYPES.values(), ids=list(BAD_CONTENT_TYPES))
async def test_a_file_part_content_type_that_is_not_a_media_type_is_400_and_stores_nothing(
    api: Deployment, content_type: bytes
) -> None:
    before = await api.state()
    response = await upload_form(api, file_part(content_type=content_type))
    error = assert_refused(response, 400, param="file")
    assert "Content-Type" in error["message"]
    assert await api.state() == before


async def test_a_file_part_with_a_media_type_and_parameters_is_accepted(api: Deployment) -> None:
    response = await upload_form(api, file_part(content_type=b"text/plain; charset=utf-8"))
    assert response.status_code == 200, response.text
    download = await api.client.get(f"/v1/files/{response.json()['id']}/content")
    assert download.headers["content-type"] == "text/plain; charset=utf-8"


SURROGATE_BODIES = {
    "filename": ('"filename": "notes\\ud800.txt"', "filename"),
    "mime_type": ('"mime_type": "text/\\udfff"', "mime_type"),
    "key": ('"\\ud83d": 1', None),
    "nested": ('"expires_after": {"anchor": "\\ud800"}', "expires_after"),
}


@pytest.mark.parametrize(("field", "param"), SURROGATE_BODIES.values(), ids=list(SURROGATE_BODIES))
async def test_a_lone_surrogate_in_an_uploads_body_is_400_and_stores_nothing(
    api: Deployment, field: str, param: str | None
) -> None:
    before = await api.state()
    fields = {k: v for k, v in create_upload().items() if f'"{k}"' not in field}
    body = json.dumps(fields)[:-1] + ", " + field + "}"
    response = await api.client.post(
        "/v1/uploads", content=body, headers={"content-type": "application/json"}
    )
    error = assert_refused(response, 400, param=param)
    assert "surrogate" in error["message"]
    assert await api.state() == before


async def test_a_lone_surrogate_in_part_ids_is_400_and_the_upload_stays_pending(
    api: Deployment,
) -> None:
    upload_id = await pending_upload(api)
    before = await api.state()
    response = await api.client.post(
        f"/v1/uploads/{upload_id}/complete",
        content='{"part_ids": ["part_\\ud800"]}',
        headers={"content-type": "application/json"},
    )
    assert_refused(response, 400, param="part_ids")
    assert await api.state() == before
    cancelled = await api.client.post(f"/v1/uploads/{upload_id}/cancel")
    assert cancelled.json()["status"] == "cancelled"


BAD_MIME_TYPES = {
    "crlf": "text/plain\r\nX-Injected: 1",
    "nul": "text/plain\x00",
    "not-latin-1": "text/plain\u2028",
    "latin-1-not-ascii": "text/pl\u00e4in",
    "longer-than-the-column": "text/" + "a" * 300,
    "no-subtype": "plain",
}


@pytest.mark.parametrize("mime_type", BAD_MIME_TYPES.values(), ids=list(BAD_MIME_TYPES))
async def test_an_uploads_mime_type_that_is_not_a_media_type_is_400_and_stores_nothing(
    api: Deployment, mime_type: str
) -> None:
    before = await api.state()
    response = await api.client.post("/v1/uploads", json=create_upload(mime_type=mime_type))
    error = assert_refused(response, 400, param="mime_type")
    assert "media type" in error["message"]
    assert await api.state() == before


async def test_an_uploaded_file_is_served_with_its_declared_media_type(api: Deployment) -> None:
    created = await api.client.post(
        "/v1/uploads", json=create_upload(mime_type="text/csv; header=present")
    )
    upload_id = created.json()["id"]
    part = await api.client.post(
        f"/v1/uploads/{upload_id}/parts", files={"data": ("blob", b"a,b\n")}
    )
    done = await api.client.post(
        f"/v1/uploads/{upload_id}/complete", json={"part_ids": [part.json()["id"]]}
    )
    assert done.status_code == 200, done.text
    download = await api.client.get(f"/v1/files/{done.json()['file']['id']}/content")
    assert download.status_code == 200
    assert download.headers["content-type"] == "text/csv; header=present"
    assert download.content == b"a,b\n"


@pytest.mark.parametrize(
    "key", ["report\x852024", "a" * 256], ids=["c1-control", "longer-than-the-column"]
)
async def test_an_idempotency_key_the_store_cannot_hold_is_400_and_stores_nothing(
    api: Deployment, key: str
) -> None:
    before = await api.state()
    response = await upload_form(
        api, file_part(), headers={"idempotency-key": key.encode("latin-1")}
    )
    assert_refused(response, 400, param="Idempotency-Key")
    assert await api.state() == before


# -- the store's backstop: a value the database refuses is the client's error -----------------


def record(**fields: Any) -> FileRecord:
    values: dict[str, Any] = {
        "id": "file-" + "0" * 24,
        "owner": "owner",
        "purpose": "user_data",
        "filename": "notes.txt",
        "bytes": 0,
        "created_us": 1,
        "expires_at": None,
        "status": "uploaded",
        "status_details": None,
        "storage_key": "00/00/" + "0" * 32,
        "sha256": None,
        "media_type": None,
        "state": "pending",
        "changed_at": 0,
    }
    return FileRecord(**{**values, **fields})


REFUSED_RECORDS = {
    "surrogate-filename": {"filename": "notes\ud800.txt"},
    "media-type-over-the-column": {"media_type": "text/" + "a" * 300},
    "purpose-over-the-column": {"purpose": "p" * 100},
}


@pytest.mark.parametrize(
    ("backend", "fields"),
    [
        pytest.param(backend, fields, id=f"{backend}-{name}")
        for backend in BACKENDS
        for name, fields in REFUSED_RECORDS.items()
        # SQLite stores strings of any length: only the surrogate is refused there.
        if backend != "sqlite" or "filename" in fields
    ],
)
async def test_a_value_the_database_refuses_is_invalid_request_never_backend_unavailable(
    backend: str, fields: dict[str, Any], tmp_path: Path
) -> None:
    store = SQLMetadataStore(database_url(backend, tmp_path), table_prefix=unique_prefix())
    try:
        with pytest.raises(InvalidRequest, match="cannot be stored"):
            await store.insert(record(**fields))
        with pytest.raises(InvalidRequest, match="cannot be stored"):
            await store.get("owner", "file-\udfff", now=0)
    finally:
        await store.drop_schema()
        await store.aclose()


async def test_a_nul_postgresql_refuses_is_invalid_request(tmp_path: Path) -> None:
    store = SQLMetadataStore(database_url("postgresql", tmp_path), table_prefix=unique_prefix())
    try:
        with pytest.raises(InvalidRequest, match="cannot be stored"):
            await store.insert(record(purpose="user\x00data"))
        with pytest.raises(InvalidRequest, match="cannot be stored"):
            await store.get("owner", "file-\x00", now=0)
    finally:
        await store.drop_schema()
        await store.aclose()


async def test_a_database_that_cannot_be_reached_is_still_backend_unavailable() -> None:
    store = SQLMetadataStore(
        "postgresql+asyncpg://postgres@127.0.0.1:9/postgres",
        engine_options={"connect_args": {"timeout": 2}},
    )
    try:
        with pytest.raises(BackendUnavailable):
            await store.get("owner", "file-" + "0" * 24, now=0)
    finally:
        await store.aclose()


# -- finding 7a: an error message repeats at most 64 characters of a value --------------------

LONG_VALUE_REQUESTS = {
    "file-id": ("GET", "/v1/files/" + "f" * LONG, None),
    "upload-id": ("POST", "/v1/uploads/upload_" + "u" * LONG + "/cancel", None),
    "order": ("GET", "/v1/files?order=" + "o" * LONG, None),
    "after": ("GET", "/v1/files?after=" + "a" * LONG, None),
    "unknown-json-key": ("POST", "/v1/uploads", {**create_upload(), "k" * 60_000: 1}),
    "purpose": ("POST", "/v1/uploads", create_upload(purpose="p" * 60_000)),
}


@pytest.mark.parametrize(
    ("method", "path", "body"), LONG_VALUE_REQUESTS.values(), ids=list(LONG_VALUE_REQUESTS)
)
async def test_an_error_repeats_at_most_64_characters_of_what_was_sent(
    sqlite_api: Deployment, method: str, path: str, body: Any
) -> None:
    response = await sqlite_api.client.request(method, path, json=body)
    assert 400 <= response.status_code < 500, response.text[:200]
    error = response.json()["error"]
    assert "Traceback" not in response.text
    assert len(response.content) < 1024, len(response.content)
    assert "..." in error["message"]
    assert error["param"] is None or len(error["param"]) <= 64


async def test_an_error_escapes_what_it_repeats(sqlite_api: Deployment) -> None:
    response = await sqlite_api.client.get("/v1/files/file-%E2%80%AEtxt.exe%00")
    error = assert_refused(response, 404, param="id")
    assert "\u202e" not in error["message"]
    assert "\x00" not in error["message"]
    assert error["message"] == "No such File object: file-\\u202etxt.exe\\x00"


# -- finding 7c: filenames hold no control and no bidi character ------------------------------

UNSAFE_FILENAMES = {
    "c1-control": "report\u0085.txt",
    "c1-csi": "report\u009b31m.txt",
    "right-to-left-override": "invoice\u202etxt.exe",
    "left-to-right-embedding": "a\u202ab.txt",
    "pop-directional-formatting": "a\u202cb.txt",
    "left-to-right-override": "a\u202db.txt",
    "right-to-left-embedding": "a\u202bb.txt",
    "first-strong-isolate": "a\u2068b.txt",
    "right-to-left-isolate": "a\u2067b.txt",
    "left-to-right-isolate": "a\u2066b.txt",
    "pop-directional-isolate": "a\u2069b.txt",
    "left-to-right-mark": "a\u200eb.txt",
    "right-to-left-mark": "a\u200fb.txt",
    "arabic-letter-mark": "a\u061cb.txt",
    "delete": "a\x7fb.txt",
}


@pytest.mark.parametrize("filename", UNSAFE_FILENAMES.values(), ids=list(UNSAFE_FILENAMES))
async def test_a_filename_with_a_control_or_bidi_character_is_400_and_stores_nothing(
    sqlite_api: Deployment, filename: str
) -> None:
    before = await sqlite_api.state()
    multipart = await upload_form(sqlite_api, file_part(filename=filename.encode()))
    error = assert_refused(multipart, 400, param="file")
    assert f"U+{ord(next(c for c in filename if not c.isprintable())):04X}" in error["message"]
    uploads = await sqlite_api.client.post("/v1/uploads", json=create_upload(filename=filename))
    assert_refused(uploads, 400, param="filename")
    assert await sqlite_api.state() == before


@pytest.mark.parametrize(
    "filename",
    [
        "r\u00e9sum\u00e9 \u5c65\u6b74\u66f8.txt",
        "\u05e9\u05dc\u05d5\u05dd.txt",
        "emoji-\U0001f4c4.txt",
    ],
)
async def test_a_filename_in_any_script_is_still_accepted(
    sqlite_api: Deployment, filename: str
) -> None:
    multipart = await upload_form(sqlite_api, file_part(filename=filename.encode()))
    assert multipart.status_code == 200, multipart.text
    assert multipart.json()["filename"] == filename
    uploads = await sqlite_api.client.post("/v1/uploads", json=create_upload(filename=filename))
    assert uploads.status_code == 200, uploads.text


# -- finding 7b: a long list page is sent a batch at a time -----------------------------------

LONG_NAME = "n" * 1000


@pytest.fixture
async def listed(tmp_path: Path) -> AsyncIterator[tuple[Deployment, FilesService]]:
    """A deployment whose owner has two and a quarter batches of files with 1 KB names, and a
    service over the same database to compare its pages with."""
    url = database_url("sqlite", tmp_path)
    files = 2 * LIST_BATCH + 50
    async with FilesService(LocalStorage(tmp_path / "blobs"), SQLMetadataStore(url)) as seeder:
        for index in range(files):
            await seeder.create(
                "default", file=b"x", filename=f"{index:04d}-{LONG_NAME}.txt", purpose="user_data"
            )
    service = FilesService(LocalStorage(tmp_path / "blobs"), SQLMetadataStore(url))
    same = FilesService(LocalStorage(tmp_path / "blobs"), SQLMetadataStore(url))
    with serve(create_app(service, close_service=True)) as server:
        async with httpx.AsyncClient(base_url=server.url, timeout=30) as client, same:
            yield Deployment(client, tmp_path, url, ""), same


PAGES = {
    "default": {},
    "all": {"limit": 10_000},
    "exactly-the-files": {"limit": 2 * LIST_BATCH + 50},
    "one-less": {"limit": 2 * LIST_BATCH + 49},
    "a-batch-and-one": {"limit": LIST_BATCH + 1},
    "two-batches": {"limit": 2 * LIST_BATCH},
    "ascending": {"order": "asc", "limit": 2 * LIST_BATCH + 10},
}


@pytest.mark.parametrize("params", PAGES.values(), ids=list(PAGES))
async def test_a_page_longer_than_a_batch_is_streamed_as_the_same_json(
    listed: tuple[Deployment, FilesService], params: dict[str, Any]
) -> None:
    api, service = listed
    async with api.client.stream("GET", "/v1/files", params=params) as response:
        assert response.status_code == 200
        assert response.headers["content-type"] == "application/json"
        # Written as it is read: no length known in advance.
        assert "content-length" not in response.headers
        body = json.loads(await response.aread())
    expected = await service.list("default", **params)
    assert body == expected.model_dump(mode="json")
    assert list(body) == ["object", "data", "first_id", "last_id", "has_more"]


async def test_paging_through_streamed_pages_sees_every_file_once(
    listed: tuple[Deployment, FilesService],
) -> None:
    api, service = listed
    seen: list[str] = []
    params: dict[str, Any] = {"limit": LIST_BATCH + 7}
    while True:
        page = (await api.client.get("/v1/files", params=params)).json()
        seen += [file["id"] for file in page["data"]]
        assert page["last_id"] == page["data"][-1]["id"]
        assert page["first_id"] == page["data"][0]["id"]
        if not page["has_more"]:
            break
        params["after"] = page["last_id"]
    everything = await service.list("default")
    assert seen == [file.id for file in everything.data]
    assert len(set(seen)) == 2 * LIST_BATCH + 50


async def test_a_page_within_one_batch_is_sent_whole(
    listed: tuple[Deployment, FilesService],
) -> None:
    api, _ = listed
    response = await api.client.get("/v1/files", params={"limit": LIST_BATCH})
    assert int(response.headers["content-length"]) == len(response.content)
    assert len(response.json()["data"]) == LIST_BATCH
    assert response.json()["has_more"] is True
