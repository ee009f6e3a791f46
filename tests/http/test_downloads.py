"""Downloads over HTTP on every storage backend: byte ranges, validators, conditional requests,
HEAD, Content-Disposition and media types, and a real ``curl`` resuming a download."""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import httpx
import pytest
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from openai_files import (
    FileObject,
    FilesService,
    LocalStorage,
    MemoryMetadataStore,
    MemoryStorage,
    Policy,
    SQLMetadataStore,
    create_app,
)
from openai_files.http._ranges import http_date

from ..s3_servers import S3Server
from ..support import requires_tool, serve

pytestmark = pytest.mark.anyio

MIB = 1024 * 1024
SIZES = {0: "empty", 1: "one-byte", 10 * MIB: "10MiB"}
BIG = 10 * MIB
HALF = BIG // 2
BASE_URL = "http://files.test"
CURL = "/usr/bin/curl"


@pytest.fixture(scope="module")
def anyio_backend() -> str:
    # Module-scoped, so that the files of each backend are stored once per module.
    return "asyncio"


@pytest.fixture(scope="module")
def contents() -> dict[int, bytes]:
    """Random bytes of every size under test, the same for every backend."""
    return {size: os.urandom(size) for size in SIZES}


@dataclass
class Downloads:
    """An app over one backend holding one stored file of each size in `SIZES`."""

    client: httpx.AsyncClient
    service: FilesService
    files: dict[int, FileObject] = field(default_factory=dict)

    def url(self, size: int) -> str:
        return f"/v1/files/{self.files[size].id}/content"

    async def get(self, size: int, method: str = "GET", **headers: str | bytes) -> httpx.Response:
        """``method`` on the file's content, with ``if_none_match="..."`` sent as
        ``If-None-Match``."""
        sent = [
            (name.replace("_", "-").encode(), value.encode() if isinstance(value, str) else value)
            for name, value in headers.items()
        ]
        return await self.client.request(method, self.url(size), headers=sent)


@pytest.fixture(scope="module", params=["memory", "local+sqlite", "s3+memory"])
async def backend(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    contents: dict[int, bytes],
) -> AsyncIterator[Downloads]:
    async with AsyncExitStack() as stack:
        if request.param == "memory":
            service = FilesService(MemoryStorage(), MemoryMetadataStore())
        elif request.param == "local+sqlite":
            root = tmp_path_factory.mktemp("downloads")
            service = FilesService(
                LocalStorage(root / "blobs"),
                SQLMetadataStore(f"sqlite+aiosqlite:///{root / 'files.db'}"),
            )
        else:
            moto: S3Server = request.getfixturevalue("moto")
            bucket = moto.create_bucket()
            stack.callback(moto.remove_bucket, bucket)
            service = FilesService(moto.storage(bucket, prefix="files/"), MemoryMetadataStore())
        await stack.enter_async_context(service)
        client = await stack.enter_async_context(
            httpx.AsyncClient(
                transport=httpx.ASGITransport(app=create_app(service)), base_url=BASE_URL
            )
        )
        downloads = Downloads(client, service)
        for size, data in contents.items():
            downloads.files[size] = await service.create(
                "default", file=data, filename=f"{SIZES[size]}.bin", purpose="assistants"
            )
        yield downloads


def quoted_sha256(data: bytes) -> str:
    return f'"{hashlib.sha256(data).hexdigest()}"'


# -- the range matrix -----------------------------------------------------------------------


def range_cases(size: int) -> list[tuple[str, str, tuple[int, int]]]:
    """(name, Range header, wanted first and last byte) for a file of ``size`` bytes; the
    range is unsatisfiable when the file is empty or the first byte is past its end."""
    last = size - 1
    return [
        ("first-byte", "bytes=0-0", (0, 0)),
        ("last-byte-as-suffix", "bytes=-1", (last, last)),
        ("last-byte-by-offset", f"bytes={max(last, 0)}-", (last, last)),
        ("suffix-1000", "bytes=-1000", (max(0, size - 1000), last)),
        ("open-ended-from-5", "bytes=5-", (5, last)),
        ("whole-file-as-a-range", "bytes=0-", (0, last)),
        ("past-the-end", f"bytes={size}-", (size, last)),
    ]


def satisfiable(size: int, first: int) -> bool:
    return size > 0 and first < size


SATISFIABLE = [
    pytest.param(size, header, window, id=f"{label}-{name}")
    for size, label in SIZES.items()
    for name, header, window in range_cases(size)
    if satisfiable(size, window[0])
]
UNSATISFIABLE = [
    pytest.param(size, header, id=f"{label}-{name}")
    for size, label in SIZES.items()
    for name, header, window in range_cases(size)
    if not satisfiable(size, window[0])
]
MALFORMED: list[str | bytes] = [
    "bytes=abc",
    "bytes=5-2",
    "items=0-1",
    "bytes=",
    "bytes=-",
    "bytes=\u0661-\u0662".encode(),  # Arabic-Indic digits, in UTF-8
    b"bytes=\xb2-\xb3",  # superscript two and three in Latin-1: str.isdigit accepts them
]


@pytest.mark.parametrize(("size", "header", "window"), SATISFIABLE)
async def test_a_satisfiable_range_is_206_with_exactly_its_bytes(
    backend: Downloads,
    contents: dict[int, bytes],
    size: int,
    header: str,
    window: tuple[int, int],
) -> None:
    first, last = window
    response = await backend.get(size, range=header)
    assert response.status_code == 206
    assert response.headers["content-range"] == f"bytes {first}-{last}/{size}"
    assert response.headers["content-length"] == str(last - first + 1)
    assert response.headers["accept-ranges"] == "bytes"
    assert response.content == contents[size][first : last + 1]


@pytest.mark.parametrize(("size", "header"), UNSATISFIABLE)
async def test_an_unsatisfiable_range_is_416_in_the_openai_error_shape(
    backend: Downloads, size: int, header: str
) -> None:
    response = await backend.get(size, range=header)
    assert response.status_code == 416
    assert response.headers["content-range"] == f"bytes */{size}"
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["type"] == "invalid_request_error"
    assert error["code"] == "range_not_satisfiable"
    assert error["param"] == "Range"
    assert str(size) in error["message"]


async def test_a_416_error_is_labelled_as_json_not_as_the_file(backend: Downloads) -> None:
    response = await backend.get(1, range="bytes=1-")
    assert response.status_code == 416
    assert response.headers["content-type"].startswith("application/json")
    assert "content-disposition" not in response.headers


@pytest.mark.parametrize("size", SIZES, ids=SIZES.values())
async def test_without_a_range_the_whole_file_is_200_with_its_validators(
    backend: Downloads, contents: dict[int, bytes], size: int
) -> None:
    response = await backend.get(size)
    assert response.status_code == 200
    assert response.content == contents[size]
    assert response.headers["content-length"] == str(size)
    assert "content-range" not in response.headers
    assert response.headers["accept-ranges"] == "bytes"
    assert response.headers["etag"] == quoted_sha256(contents[size])
    assert response.headers["last-modified"] == http_date(backend.files[size].created_at)


@pytest.mark.parametrize("size", SIZES, ids=SIZES.values())
async def test_a_malformed_range_is_ignored_and_the_whole_file_served(
    backend: Downloads, contents: dict[int, bytes], size: int
) -> None:
    for header in MALFORMED:
        response = await backend.get(size, range=header)
        assert (response.status_code, "content-range" in response.headers) == (200, False), header
        assert response.headers["content-length"] == str(size), header
        assert response.content == contents[size], header


async def test_several_ranges_are_answered_with_the_whole_file(
    backend: Downloads, contents: dict[int, bytes]
) -> None:
    response = await backend.get(1, range="bytes=0-0,-1")
    assert response.status_code == 200
    assert response.content == contents[1]


# -- conditional requests -------------------------------------------------------------------


async def test_if_none_match_with_the_current_etag_is_304_without_a_body(
    backend: Downloads, contents: dict[int, bytes]
) -> None:
    etag = quoted_sha256(contents[BIG])
    for if_none_match in (etag, f"W/{etag}", f'"stale", {etag}', "*"):
        response = await backend.get(BIG, if_none_match=if_none_match)
        assert response.status_code == 304, if_none_match
        assert response.content == b""
        assert response.headers["etag"] == etag
        assert response.headers["last-modified"] == http_date(backend.files[BIG].created_at)


async def test_if_none_match_with_another_etag_is_200(
    backend: Downloads, contents: dict[int, bytes]
) -> None:
    response = await backend.get(1, if_none_match=quoted_sha256(b"an older version"))
    assert response.status_code == 200
    assert response.content == contents[1]


async def test_if_range_with_the_current_etag_honours_the_range(
    backend: Downloads, contents: dict[int, bytes]
) -> None:
    response = await backend.get(
        BIG, range=f"bytes={HALF}-{HALF + 99}", if_range=quoted_sha256(contents[BIG])
    )
    assert response.status_code == 206
    assert response.headers["content-range"] == f"bytes {HALF}-{HALF + 99}/{BIG}"
    assert response.content == contents[BIG][HALF : HALF + 100]


async def test_if_range_with_the_last_modified_date_honours_the_range(
    backend: Downloads, contents: dict[int, bytes]
) -> None:
    modified = http_date(backend.files[1].created_at)
    response = await backend.get(1, range="bytes=0-0", if_range=modified)
    assert response.status_code == 206
    assert response.content == contents[1]


async def test_if_range_with_a_stale_etag_serves_the_whole_file(
    backend: Downloads, contents: dict[int, bytes]
) -> None:
    for stale in (quoted_sha256(b"an older version"), f"W/{quoted_sha256(contents[BIG])}"):
        response = await backend.get(BIG, range=f"bytes={HALF}-", if_range=stale)
        assert response.status_code == 200, stale
        assert "content-range" not in response.headers
        assert response.headers["content-length"] == str(BIG)
        assert response.content == contents[BIG]


async def test_if_range_with_a_stale_etag_ignores_even_an_unsatisfiable_range(
    backend: Downloads, contents: dict[int, bytes]
) -> None:
    response = await backend.get(1, range="bytes=5-", if_range=quoted_sha256(b"older"))
    assert response.status_code == 200
    assert response.content == contents[1]


@pytest.mark.parametrize("offset", [0, 1, 3600], ids=["at", "1s-after", "1h-after"])
async def test_if_modified_since_at_or_after_last_modified_is_304(
    backend: Downloads, offset: int
) -> None:
    since = http_date(backend.files[BIG].created_at + offset)
    response = await backend.get(BIG, if_modified_since=since)
    assert response.status_code == 304
    assert response.content == b""
    assert "etag" in response.headers


async def test_if_modified_since_before_last_modified_is_200(
    backend: Downloads, contents: dict[int, bytes]
) -> None:
    since = http_date(backend.files[1].created_at - 1)
    response = await backend.get(1, if_modified_since=since)
    assert response.status_code == 200
    assert response.content == contents[1]


async def test_if_none_match_takes_precedence_over_if_modified_since(backend: Downloads) -> None:
    later = http_date(backend.files[1].created_at + 3600)
    response = await backend.get(1, if_none_match='"stale"', if_modified_since=later)
    assert response.status_code == 200


# -- HEAD -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "headers",
    [{}, {"range": "bytes=5-"}, {"range": "bytes=-1000"}, {"range": "bytes=abc"}],
    ids=["whole", "open-ended", "suffix", "malformed"],
)
async def test_head_has_the_status_and_headers_of_get_and_no_body(
    backend: Downloads, headers: dict[str, str]
) -> None:
    got = await backend.get(BIG, **headers, x_request_id="one")  # the one header that differs
    head = await backend.get(BIG, "HEAD", **headers, x_request_id="one")
    assert head.status_code == got.status_code
    assert dict(head.headers) == dict(got.headers)
    assert head.content == b""


async def test_head_with_the_current_etag_is_304_like_get(
    backend: Downloads, contents: dict[int, bytes]
) -> None:
    etag = quoted_sha256(contents[BIG])
    got = await backend.get(BIG, if_none_match=etag, x_request_id="one")
    head = await backend.get(BIG, "HEAD", if_none_match=etag, x_request_id="one")
    assert (head.status_code, got.status_code) == (304, 304)
    assert dict(head.headers) == dict(got.headers)


# -- Content-Disposition and media type -----------------------------------------------------

DISPOSITION = re.compile(r"attachment; filename=\"([\x20-\x7e]*)\"; filename\*=UTF-8''(\S+)")


@pytest.mark.parametrize(
    "filename",
    [
        'the "final" report.txt',
        "naïve café résumé.pdf",
        "報告書 2024.jsonl",
        'a;b=c,d\\e%20f"g.txt',
        "emoji \U0001f4c4 file.csv",
    ],
)
async def test_content_disposition_has_an_ascii_fallback_and_the_exact_name(
    backend: Downloads, filename: str
) -> None:
    created = await backend.service.create(
        "default", file=b"x", filename=filename, purpose="assistants"
    )
    response = await backend.client.get(f"/v1/files/{created.id}/content")
    assert response.status_code == 200
    match = DISPOSITION.fullmatch(response.headers["content-disposition"])
    assert match is not None, response.headers["content-disposition"]
    fallback, encoded = match.groups()
    assert fallback.isascii()
    assert '"' not in fallback
    assert "\\" not in fallback
    assert fallback.endswith(Path(filename).suffix)
    assert unquote(encoded, errors="strict") == filename


async def test_downloads_are_octet_streams_by_default(memory_service: FilesService) -> None:
    app = create_app(memory_service)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=BASE_URL) as c:
        created = await upload(c, "table.csv", b"a,b\n1,2\n", "text/csv")
        response = await c.get(f"/v1/files/{created}/content")
    assert response.headers["content-type"] == "application/octet-stream"


async def test_keep_media_type_serves_the_type_declared_at_upload() -> None:
    service = FilesService(
        MemoryStorage(), MemoryMetadataStore(), policy=Policy(keep_media_type=True)
    )
    async with service:
        app = create_app(service)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url=BASE_URL) as c:
            created = await upload(c, "table.csv", b"a,b\n1,2\n", "text/csv")
            response = await c.get(f"/v1/files/{created}/content")
            head = await c.head(f"/v1/files/{created}/content", headers={"range": "bytes=0-0"})
    assert response.headers["content-type"] == "text/csv"
    assert head.headers["content-type"] == "text/csv"


async def upload(client: httpx.AsyncClient, filename: str, data: bytes, media_type: str) -> str:
    response = await client.post(
        "/v1/files", files={"file": (filename, data, media_type)}, data={"purpose": "assistants"}
    )
    assert response.status_code == 200, response.text
    file_id: str = response.json()["id"]
    return file_id


# -- resuming with curl ---------------------------------------------------------------------


@dataclass
class Exchange:
    method: str
    path: str
    range: str | None
    status: int = 0
    body_bytes: int = 0


class ExchangeLog:
    """ASGI middleware that records each HTTP request and how many body bytes it was sent."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.exchanges: list[Exchange] = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        exchange = Exchange(scope["method"], scope["path"], _text(headers.get(b"range")))
        self.exchanges.append(exchange)

        async def counting_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                exchange.status = message["status"]
            elif message["type"] == "http.response.body":
                exchange.body_bytes += len(message.get("body", b""))
            await send(message)

        await self.app(scope, receive, counting_send)


def _text(value: bytes | None) -> str | None:
    return None if value is None else value.decode("latin-1")


def curl(*args: str | Path) -> list[str]:
    """Run curl quietly, failing on HTTP errors; its ``-w`` output split on spaces."""
    done = subprocess.run(
        [CURL, "--silent", "--show-error", "--fail", "--noproxy", "*", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.split()


@requires_tool(CURL, "to resume a download")
def test_curl_resumes_an_interrupted_download_fetching_only_the_missing_half(
    tmp_path: Path, contents: dict[int, bytes]
) -> None:
    data = contents[BIG]
    service = FilesService(
        LocalStorage(tmp_path / "blobs"),
        SQLMetadataStore(f"sqlite+aiosqlite:///{tmp_path / 'files.db'}"),
    )
    app = ExchangeLog(create_app(service, close_service=True))
    part = tmp_path / "download.bin"
    written = "%{http_code} %{size_download}"
    with serve(app) as server, httpx.Client(base_url=server.url, trust_env=False) as client:
        created: dict[str, Any] = client.post(
            "/v1/files", files={"file": ("big.bin", data)}, data={"purpose": "assistants"}
        ).json()
        url = f"{server.url}/v1/files/{created['id']}/content"
        # The first half arrives, then the connection is lost.
        first = curl("--range", f"0-{HALF - 1}", "--output", part, "--write-out", written, url)
        assert part.stat().st_size == HALF
        resumed = curl("--continue-at", "-", "--output", part, "--write-out", written, url)
    assert first == ["206", str(HALF)]
    assert resumed == ["206", str(BIG - HALF)]
    assert hashlib.sha256(part.read_bytes()).digest() == hashlib.sha256(data).digest()
    downloads = [
        (e.method, e.range, e.status, e.body_bytes)
        for e in app.exchanges
        if e.path.endswith("/content")
    ]
    assert downloads == [
        ("GET", f"bytes=0-{HALF - 1}", 206, HALF),
        ("GET", f"bytes={HALF}-", 206, BIG - HALF),
    ]
