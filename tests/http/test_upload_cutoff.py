"""The byte at which a streamed upload is cut off: a file of exactly ``max_file_size`` bytes is
stored, one byte more is refused with 413, with a declared length and streamed in chunks."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from openai_files import FilesService, LocalStorage, Policy, SQLMetadataStore, create_app

from ..support import ServerThread, serve, stored_files

LIMIT = 64 * 1024


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServerThread]:
    service = FilesService(
        LocalStorage(tmp_path / "blobs"),
        SQLMetadataStore(f"sqlite+aiosqlite:///{tmp_path / 'files.db'}"),
        policy=Policy(max_file_size=LIMIT),
    )
    with serve(create_app(service, close_service=True)) as running:
        yield running


def form(size: int) -> tuple[bytes, str]:
    """A multipart body with a file of ``size`` bytes, and its content type."""
    boundary = uuid.uuid4().hex
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="purpose"\r\n\r\nassistants\r\n'
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="f.bin"\r\n'
            "Content-Type: application/octet-stream\r\n\r\n"
        ).encode()
        + b"x" * size
        + f"\r\n--{boundary}--\r\n".encode()
    )
    return body, f"multipart/form-data; boundary={boundary}"


def send(url: str, size: int, *, chunked: bool) -> httpx.Response:
    body, content_type = form(size)
    headers = {"content-type": content_type}
    if chunked:  # an iterator has no length: httpx sends it with Transfer-Encoding: chunked
        pieces = (body[start : start + 4096] for start in range(0, len(body), 4096))
        response = httpx.post(f"{url}/v1/files", content=pieces, headers=headers, timeout=30)
        assert response.request.headers.get("transfer-encoding") == "chunked"
        return response
    response = httpx.post(f"{url}/v1/files", content=body, headers=headers, timeout=30)
    assert response.request.headers["content-length"] == str(len(body))
    return response


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_a_file_of_exactly_the_limit_is_stored(server: ServerThread, chunked: bool) -> None:
    response = send(server.url, LIMIT, chunked=chunked)
    assert response.status_code == 200, response.text
    assert response.json()["bytes"] == LIMIT


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_one_byte_over_the_limit_is_refused_and_leaves_nothing(
    server: ServerThread, tmp_path: Path, chunked: bool
) -> None:
    response = send(server.url, LIMIT + 1, chunked=chunked)
    assert response.status_code == 413, response.text
    assert response.json()["error"]["code"] == "file_too_large"
    assert str(LIMIT) in response.json()["error"]["message"]
    assert stored_files(tmp_path / "blobs") == []
    assert httpx.get(f"{server.url}/v1/files").json()["data"] == []
