"""The byte at which a streamed upload is cut off: a file of exactly ``max_file_size`` bytes is
stored, one byte more is refused with 413, with a declared length and streamed in chunks."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from openai_files import FilesService, LocalStorage, Policy, SQLMetadataStore, create_app
from openai_files.http._files_api import FORM_OVERHEAD

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


def form(size: int, boundary: str = "") -> tuple[bytes, str]:
    """A multipart body with a file of ``size`` bytes, and its content type."""
    boundary = boundary or uuid.uuid4().hex
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


def padded_form(size: int, total: int) -> tuple[bytes, str]:
    """A form with a file of ``size`` bytes and text fields that make it ``total`` bytes long
    (each field under the form's limit of 64 KiB)."""
    boundary = uuid.uuid4().hex
    body, content_type = form(size, boundary)
    missing = total - len(body)
    pads: list[bytes] = []
    index = 0
    while missing > 0:
        head = (
            f'--{boundary}\r\nContent-Disposition: form-data; name="note{index}"\r\n\r\n'
        ).encode()
        room = min(60_000, missing - len(head) - 2)
        if room < 0:  # too little left for a field of its own: lengthen the previous one
            assert pads
            pads[-1] = pads[-1][:-2] + b"n" * missing + b"\r\n"
            break
        pads.append(head + b"n" * room + b"\r\n")
        missing -= len(pads[-1])
        index += 1
    padded = b"".join(pads) + body
    assert len(padded) == total
    return padded, content_type


@pytest.mark.parametrize("over", [0, 1], ids=["at-the-limit", "one-byte-over"])
def test_a_declared_length_is_refused_up_front_from_one_byte_past_the_form_limit(
    server: ServerThread, over: int
) -> None:
    """The form may carry ``FORM_OVERHEAD`` bytes besides the file: a Content-Length of exactly
    the file limit plus that is read, one byte more is refused before the body is read."""
    total = LIMIT + FORM_OVERHEAD + over
    body, content_type = padded_form(LIMIT, total)
    response = httpx.post(
        f"{server.url}/v1/files", content=body, headers={"content-type": content_type}, timeout=60
    )
    assert response.request.headers["content-length"] == str(total)
    if over:
        assert response.status_code == 413, response.text
    else:
        assert response.status_code == 200, response.text
        assert response.json()["bytes"] == LIMIT
