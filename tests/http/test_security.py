"""Owners are walled off from each other, and API keys stay secret.

- Owner B can never read, list, download, delete, hold, or add parts to, complete or cancel
  owner A's resources; what B gets for A's id is byte for byte what B gets for an id that does
  not exist, so B cannot even learn that the id is real.
- Every configured key is compared on every request, whichever one matches.
- Keys never appear in a log record, a response body or a response header.
- A missing or malformed ``Authorization`` header is 401 in OpenAI's shape, with
  ``WWW-Authenticate: Bearer``.
"""

from __future__ import annotations

import hmac
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.requests import Request

from openai_files import (
    AuthenticationFailed,
    FileNotFound,
    FilesService,
    LocalStorage,
    SQLMetadataStore,
    api_key_auth,
    create_app,
)
from openai_files.ids import new_file_id, new_object_id, parse_file_id
from openai_files.storage.local import UNFINISHED_SUFFIX

from ..support import BATCH_LINE, serve, stored_files

pytestmark = pytest.mark.anyio

KEY_A = "sk-owner-a-7f3c9e1d2b4a6f8e0c1d3b5a7e9f2c4d"
KEY_B = "sk-owner-b-1a2b3c4d5e6f7a8b9c0d1e2f3a4b5c6d"
OWNER_A, OWNER_B = "owner-a", "owner-b"
KEYS = {KEY_A: OWNER_A, KEY_B: OWNER_B}
SECRET = b"owner A's secret bytes"
BOUNDARY = "securityBoundary0123456789"
# Headers that may differ between two answers for reasons other than the resource asked for.
REQUEST_SPECIFIC_HEADERS = {"date", "server", "x-request-id"}


def bearer(key: str) -> dict[str, str]:
    return {"authorization": f"Bearer {key}"}


def service_over(root: Path) -> FilesService:
    return FilesService(
        LocalStorage(root / "blobs"),
        SQLMetadataStore(f"sqlite+aiosqlite:///{root / 'files.db'}"),
    )


@pytest.fixture
async def service(tmp_path: Path) -> AsyncIterator[FilesService]:
    async with service_over(tmp_path) as service:
        yield service


@pytest.fixture
async def client(service: FilesService) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(service, auth=api_key_auth(KEYS))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://files.test") as client:
        yield client


@dataclass
class OwnerA:
    """Owner A's resources: a file, a held batch file, and a pending upload with one part."""

    file_id: str
    held_id: str
    upload_id: str
    part_id: str
    etag: str
    files: list[dict[str, Any]] = field(default_factory=list)


async def json_of(response: httpx.Response) -> Any:
    assert response.status_code == 200, response.text
    return response.json()


@pytest.fixture
async def owner_a(client: httpx.AsyncClient, service: FilesService) -> OwnerA:
    a = bearer(KEY_A)
    file = await json_of(
        await client.post(
            "/v1/files",
            files={"file": ("secret.txt", SECRET)},
            data={"purpose": "user_data"},
            headers=a,
        )
    )
    held = await json_of(
        await client.post(
            "/v1/files",
            files={"file": ("held.jsonl", BATCH_LINE)},
            data={"purpose": "batch"},
            headers=a,
        )
    )
    await service.hold(OWNER_A, held["id"], "batch_a")
    upload = await json_of(
        await client.post(
            "/v1/uploads",
            json={
                "filename": "big.txt",
                "purpose": "user_data",
                "bytes": len(SECRET),
                "mime_type": "text/plain",
            },
            headers=a,
        )
    )
    part = await json_of(
        await client.post(
            f"/v1/uploads/{upload['id']}/parts", files={"data": ("blob", SECRET)}, headers=a
        )
    )
    content = await client.head(f"/v1/files/{file['id']}/content", headers=a)
    return OwnerA(
        file_id=file["id"],
        held_id=held["id"],
        upload_id=upload["id"],
        part_id=part["id"],
        etag=content.headers["etag"],
        files=[held, file],
    )


def unknown_like(existing: str) -> str:
    """A well-formed id of the same shape and length as ``existing`` that names nothing."""
    created_us = parse_file_id(existing)
    if created_us is not None:
        made = new_file_id(created_us)
    else:
        made = new_object_id(existing[: existing.index("_") + 1])
    assert made != existing
    assert len(made) == len(existing)
    return made


def multipart(field_name: str, content: bytes) -> tuple[bytes, dict[str, str]]:
    body = (
        (
            f"--{BOUNDARY}\r\n"
            f'Content-Disposition: form-data; name="{field_name}"; filename="part.bin"\r\n'
            "Content-Type: application/octet-stream\r\n\r\n"
        ).encode()
        + content
        + f"\r\n--{BOUNDARY}--\r\n".encode()
    )
    return body, {"content-type": f"multipart/form-data; boundary={BOUNDARY}"}


# -- the matrix: every endpoint that names one of A's resources, asked by B -------------------


Extra = tuple[bytes | None, dict[str, str]]
"""What a probe adds to its request, from A's resources: a body and headers."""


@dataclass(frozen=True)
class Probe:
    """One request naming a resource of A's; ``kind`` is ``file`` or ``upload``."""

    method: str
    path: str
    kind: str
    headers: dict[str, str] = field(default_factory=dict)
    extra: Callable[[OwnerA], Extra] | None = None
    # A's own request succeeds with this status (run last: it may change A's resource).
    owner_status: int = 200

    def request(
        self, client: httpx.AsyncClient, key: str, resource_id: str, a: OwnerA
    ) -> Awaitable[httpx.Response]:
        content, headers = self.extra(a) if self.extra else (None, {})
        return client.request(
            self.method,
            self.path.format(id=resource_id),
            content=content,
            headers={**bearer(key), **self.headers, **headers},
        )


CONTENT = "/v1/files/{id}/content"
PROBES = {
    "retrieve": Probe("GET", "/v1/files/{id}", "file"),
    "retrieve-head": Probe("HEAD", "/v1/files/{id}", "file"),
    "content": Probe("GET", CONTENT, "file"),
    "content-range": Probe("GET", CONTENT, "file", {"range": "bytes=0-4"}, owner_status=206),
    "content-suffix-range": Probe("GET", CONTENT, "file", {"range": "bytes=-3"}, owner_status=206),
    "content-unsatisfiable-range": Probe(
        "GET", CONTENT, "file", {"range": "bytes=999999-"}, owner_status=416
    ),
    "content-head": Probe("HEAD", CONTENT, "file"),
    "content-head-range": Probe("HEAD", CONTENT, "file", {"range": "bytes=0-4"}, owner_status=206),
    "content-if-none-match-any": Probe(
        "GET", CONTENT, "file", {"if-none-match": "*"}, owner_status=304
    ),
    "content-if-none-match-their-etag": Probe(
        "GET", CONTENT, "file", extra=lambda a: (None, {"if-none-match": a.etag}), owner_status=304
    ),
    "content-if-range-their-etag": Probe(
        "GET",
        CONTENT,
        "file",
        extra=lambda a: (None, {"if-range": a.etag, "range": "bytes=1-2"}),
        owner_status=206,
    ),
    "delete": Probe("DELETE", "/v1/files/{id}", "file"),
    "delete-unprefixed": Probe("DELETE", "/files/{id}", "file"),
    # A's upload holds its declared bytes already: A's own part is refused for its size (413),
    # which shows the probe reached A's upload; B's is 404 like an unknown upload's.
    "upload-add-part": Probe(
        "POST",
        "/v1/uploads/{id}/parts",
        "upload",
        extra=lambda a: multipart("data", b"evil"),
        owner_status=413,
    ),
    "upload-complete": Probe(
        "POST",
        "/v1/uploads/{id}/complete",
        "upload",
        extra=lambda a: (
            json.dumps({"part_ids": [a.part_id]}).encode(),
            {"content-type": "application/json"},
        ),
    ),
    "upload-cancel": Probe("POST", "/v1/uploads/{id}/cancel", "upload"),
}


async def assert_a_untouched(client: httpx.AsyncClient, service: FilesService, a: OwnerA) -> None:
    headers = bearer(KEY_A)
    listing = await json_of(await client.get("/v1/files", headers=headers))
    assert listing["data"] == a.files
    content = await client.get(f"/v1/files/{a.file_id}/content", headers=headers)
    assert content.content == SECRET
    parts = await service.metadata.get_parts(OWNER_A, a.upload_id)
    assert [part.id for part in parts] == [a.part_id]
    upload = await service.metadata.get_upload(OWNER_A, a.upload_id)
    assert upload is not None
    assert upload.state == "pending"
    # Still held: A cannot delete it either.
    assert (await client.delete(f"/v1/files/{a.held_id}", headers=headers)).status_code == 409


def comparable_headers(response: httpx.Response, replace: tuple[str, str]) -> list[tuple[str, str]]:
    old, new = replace
    return sorted(
        (name.lower(), value.replace(old, new))
        for name, value in response.headers.multi_items()
        if name.lower() not in REQUEST_SPECIFIC_HEADERS
    )


def assert_indistinguishable(
    real: httpx.Response, unknown: httpx.Response, real_id: str, unknown_id: str
) -> None:
    """B's answer for A's id is the answer for an unknown id, with the id B sent in it."""
    assert real.status_code == unknown.status_code == 404, real.text
    assert comparable_headers(real, (real_id, "ID")) == comparable_headers(
        unknown, (unknown_id, "ID")
    )
    assert real.content == unknown.content.replace(unknown_id.encode(), real_id.encode())


@pytest.mark.parametrize("probe", PROBES.values(), ids=list(PROBES))
async def test_another_owners_resource_is_answered_exactly_as_one_that_does_not_exist(
    client: httpx.AsyncClient, service: FilesService, tmp_path: Path, owner_a: OwnerA, probe: Probe
) -> None:
    real_id = owner_a.file_id if probe.kind == "file" else owner_a.upload_id
    unknown_id = unknown_like(real_id)

    as_b = await probe.request(client, KEY_B, real_id, owner_a)
    unknown = await probe.request(client, KEY_B, unknown_id, owner_a)

    assert_indistinguishable(as_b, unknown, real_id, unknown_id)
    assert SECRET not in as_b.content
    await assert_a_untouched(client, service, owner_a)
    # A's one part, sent in order, is in the upload's appended file, whole.
    appended = f"{owner_a.upload_id}/.appended{UNFINISHED_SUFFIX}"
    assert stored_files(tmp_path / "blobs" / "uploads") == [appended]
    assert (tmp_path / "blobs" / "uploads" / appended).read_bytes() == SECRET
    # The probe does reach A's resource when A sends it.
    as_a = await probe.request(client, KEY_A, real_id, owner_a)
    assert as_a.status_code == probe.owner_status, as_a.text


async def test_a_held_file_of_another_owner_is_answered_as_one_that_does_not_exist(
    client: httpx.AsyncClient, service: FilesService, owner_a: OwnerA
) -> None:
    # Deleting a held file is 409 for its owner; for anyone else it must not exist at all.
    unknown_id = unknown_like(owner_a.held_id)
    as_b = await client.delete(f"/v1/files/{owner_a.held_id}", headers=bearer(KEY_B))
    unknown = await client.delete(f"/v1/files/{unknown_id}", headers=bearer(KEY_B))
    assert_indistinguishable(as_b, unknown, owner_a.held_id, unknown_id)
    await assert_a_untouched(client, service, owner_a)


async def test_another_owners_files_are_never_listed(
    client: httpx.AsyncClient, service: FilesService, owner_a: OwnerA
) -> None:
    mine = await json_of(
        await client.post(
            "/v1/files",
            files={"file": ("secret.txt", b"B's own bytes")},
            data={"purpose": "user_data"},
            headers=bearer(KEY_B),
        )
    )
    queries = [
        "",
        "?order=asc",
        "?purpose=user_data",
        "?purpose=batch",
        "?limit=1",
        f"?after={owner_a.held_id}&order=asc",
    ]
    for query in queries:
        response = await client.get(f"/v1/files{query}", headers=bearer(KEY_B))
        listed = (await json_of(response))["data"]
        assert all(file["id"] == mine["id"] for file in listed), (query, listed)
        assert owner_a.file_id not in response.text
        assert owner_a.held_id not in response.text
    await assert_a_untouched(client, service, owner_a)


async def test_a_cursor_from_another_owner_pages_exactly_as_an_unknown_one(
    client: httpx.AsyncClient, owner_a: OwnerA
) -> None:
    for _ in range(2):
        await json_of(
            await client.post(
                "/v1/files",
                files={"file": ("b.txt", b"B")},
                data={"purpose": "user_data"},
                headers=bearer(KEY_B),
            )
        )
    unknown_id = unknown_like(owner_a.file_id)
    for order in ("asc", "desc"):
        as_b = await client.get(
            f"/v1/files?after={owner_a.file_id}&order={order}", headers=bearer(KEY_B)
        )
        unknown = await client.get(
            f"/v1/files?after={unknown_id}&order={order}", headers=bearer(KEY_B)
        )
        assert as_b.status_code == unknown.status_code == 200
        assert as_b.content == unknown.content
        assert owner_a.file_id not in as_b.text


async def test_an_upload_by_one_owner_is_invisible_to_the_other(
    client: httpx.AsyncClient, service: FilesService, owner_a: OwnerA
) -> None:
    created = await json_of(
        await client.post(
            "/v1/files",
            files={"file": ("secret.txt", b"B's bytes")},
            data={"purpose": "user_data"},
            headers=bearer(KEY_B),
        )
    )
    await assert_a_untouched(client, service, owner_a)
    as_a = await client.get(f"/v1/files/{created['id']}", headers=bearer(KEY_A))
    assert as_a.status_code == 404


async def test_another_owner_can_neither_hold_nor_release_a_file(
    service: FilesService, client: httpx.AsyncClient, owner_a: OwnerA
) -> None:
    for file_id in (owner_a.file_id, owner_a.held_id):
        unknown_id = unknown_like(file_id)
        with pytest.raises(FileNotFound) as real:
            await service.hold(OWNER_B, file_id, "batch_b")
        with pytest.raises(FileNotFound) as unknown:
            await service.hold(OWNER_B, unknown_id, "batch_b")
        assert real.value.message == unknown.value.message.replace(unknown_id, file_id)
        assert (real.value.param, real.value.code) == (unknown.value.param, unknown.value.code)
        with pytest.raises(FileNotFound):
            async with service.holding(OWNER_B, file_id, "batch_b"):
                pass  # pragma: no cover - never entered
        # Releasing under A's own holder name does nothing for B, as for an unknown id.
        assert await service.release(OWNER_B, file_id, "batch_a") is False
        assert await service.release(OWNER_B, unknown_id, "batch_a") is False
    # B's attempts held nothing: A deletes the file B tried to hold, but not the one A holds.
    await assert_a_untouched(client, service, owner_a)
    assert (await client.delete(f"/v1/files/{owner_a.file_id}", headers=bearer(KEY_A))).is_success


# -- keys: compared in constant time, never logged, never echoed ------------------------------


def request_with(authorization: str | None) -> Request:
    headers = [] if authorization is None else [(b"authorization", authorization.encode())]
    return Request({"type": "http", "method": "GET", "path": "/v1/files", "headers": headers})


@pytest.mark.parametrize(
    "authorization",
    [
        f"Bearer {KEY_A}",
        f"Bearer {KEY_B}",
        "Bearer sk-owner-c-3333",
        "Bearer sk-owner-a-7f3c9e1d2b4a6f8e0c1d3b5a7e9f2c4",  # A's key less one character
        "Bearer",
        "Basic dXNlcjpwYXNz",
        None,
    ],
    ids=["first-key", "second-key", "unknown", "prefix-of-a-key", "empty", "basic", "missing"],
)
def test_every_key_is_compared_whichever_matches(
    monkeypatch: pytest.MonkeyPatch, authorization: str | None
) -> None:
    keys = {KEY_A: OWNER_A, KEY_B: OWNER_B, "sk-third-key-000000000000000000000000": "owner-c"}
    authenticate = api_key_auth(keys)
    compared: list[bytes] = []
    real_compare = hmac.compare_digest

    def counting(a: bytes, b: bytes) -> bool:
        compared.append(b)
        return real_compare(a, b)

    monkeypatch.setattr("openai_files.http.auth.hmac.compare_digest", counting)
    try:
        owner: str | None = str(authenticate(request_with(authorization)))
    except AuthenticationFailed:
        owner = None
    assert sorted(compared) == sorted(key.encode() for key in keys)
    expected = {f"Bearer {key}": name for key, name in keys.items()}.get(authorization or "")
    assert owner == expected


AUTH_ROUTES = [
    ("GET", "/v1/files"),
    ("POST", "/v1/files"),
    ("GET", "/files/file-x"),
    ("DELETE", "/v1/files/file-x"),
    ("GET", "/v1/files/file-x/content"),
    ("HEAD", "/v1/files/file-x/content"),
    ("POST", "/v1/uploads"),
    ("POST", "/v1/uploads/upload_x/parts"),
    ("POST", "/v1/uploads/upload_x/complete"),
    ("POST", "/v1/uploads/upload_x/cancel"),
]
NO_KEY = "You didn't provide an API key"
BAD_AUTHORIZATION = {
    "missing": (None, NO_KEY),
    "basic": ("Basic dXNlcjpwYXNz", NO_KEY),
    "basic-with-a-valid-key": (f"Basic {KEY_A}", NO_KEY),
    "bearer-alone": ("Bearer", NO_KEY),
    "bearer-and-space": ("Bearer ", NO_KEY),
    "token-scheme": (f"Token {KEY_A}", NO_KEY),
    "key-without-scheme": (KEY_A, NO_KEY),
    "unknown-key": ("Bearer sk-not-a-key", "Incorrect API key provided"),
    "key-with-junk-after": (f"Bearer {KEY_A}x", "Incorrect API key provided"),
}


@pytest.mark.parametrize(("method", "path"), AUTH_ROUTES)
@pytest.mark.parametrize(
    ("authorization", "says"), BAD_AUTHORIZATION.values(), ids=list(BAD_AUTHORIZATION)
)
async def test_missing_or_malformed_authorization_is_401_in_openai_shape(
    client: httpx.AsyncClient,
    tmp_path: Path,
    method: str,
    path: str,
    authorization: str | None,
    says: str,
) -> None:
    headers = {} if authorization is None else {"authorization": authorization}
    content, form = multipart("file", b"x") if method == "POST" else (None, {})
    response = await client.request(method, path, headers={**headers, **form}, content=content)
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
    if method != "HEAD":
        body = response.json()
        assert body == {
            "error": {
                "message": body["error"]["message"],
                "type": "authentication_error",
                "param": None,
                "code": "invalid_api_key",
            }
        }
        assert says in body["error"]["message"]
        assert KEY_A not in response.text
    assert stored_files(tmp_path / "blobs") == []


LOGGERS = ["", "uvicorn", "uvicorn.error", "uvicorn.access", "uvicorn.asgi", "openai_files"]
"""The root logger, and those that may not propagate to it (uvicorn's access log does not)."""


class Records(logging.Handler):
    """Every log record, as formatted and with all its attributes, from every logger at DEBUG."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.texts: list[str] = []
        self._saved: list[tuple[logging.Logger, int, bool]] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.texts.append(logging.Formatter().format(record))
        self.texts.append(repr(vars(record)))

    def attach(self) -> None:
        # After the server is configured: uvicorn replaces its loggers' handlers and levels then.
        for logger in map(logging.getLogger, LOGGERS):
            self._saved.append((logger, logger.level, logger.disabled))
            logger.addHandler(self)
            logger.setLevel(logging.DEBUG)
            logger.disabled = False

    def detach(self) -> None:
        for logger, level, disabled in self._saved:
            logger.removeHandler(self)
            logger.setLevel(level)
            logger.disabled = disabled


@pytest.fixture
def records() -> Iterator[Records]:
    handler = Records()
    try:
        yield handler
    finally:
        handler.detach()


def test_keys_are_never_logged_nor_echoed(tmp_path: Path, records: Records) -> None:
    app = create_app(service_over(tmp_path), auth=api_key_auth(KEYS), close_service=True)
    with serve(app) as server, httpx.Client(base_url=server.url) as http:
        records.attach()
        a, b = bearer(KEY_A), bearer(KEY_B)
        created = http.post(
            "/v1/files",
            files={"file": ("k.txt", b"bytes")},
            data={"purpose": "user_data"},
            headers=a,
        )
        file_id = created.json()["id"]
        answers = [
            (200, created),
            (200, http.get("/v1/files", headers=a)),
            (404, http.get(f"/v1/files/{file_id}", headers=b)),
            (200, http.get(f"/v1/files/{file_id}/content", headers=a)),
            (401, http.get("/v1/files", headers={"authorization": f"Bearer {KEY_A}-wrong"})),
            (401, http.get("/v1/files", headers={"authorization": f"Basic {KEY_B}"})),
            (401, http.get("/v1/files", headers={"authorization": KEY_A})),
            (400, http.post("/v1/files", content=b"not a form", headers=a)),
            (400, http.post("/v1/uploads", content=b"{", headers=b)),
            (200, http.delete(f"/v1/files/{file_id}", headers=a)),
            (404, http.delete(f"/v1/files/{file_id}", headers=a)),
        ]
    assert [status for status, _ in answers] == [r.status_code for _, r in answers]
    assert any("GET /v1/files" in text for text in records.texts), "the access log was not captured"
    for key in (KEY_A, KEY_B):
        assert not [text for text in records.texts if key in text]
        for _, response in answers:
            assert key not in response.text
            assert all(key not in value for value in response.headers.values())
