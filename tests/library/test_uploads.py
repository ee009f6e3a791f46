"""The Uploads API: large files sent in parts, then assembled into one file.

The official SDK uploads a 300 MiB file on both deployment shapes; raw HTTP sends parts
concurrently and out of order, checks ``md5``, and meets every refusal the API defines (wrong
totals, bad part ids, finished or expired uploads, bad parameters, oversized parts, another
owner's upload). The file an upload produces obeys the rules of ``POST /v1/files``, and on local
disk it is assembled by the kernel without reading the parts.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import secrets
from collections.abc import AsyncIterator, Iterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import httpx
import openai
import pytest

from openai_files import (
    FilesService,
    LocalStorage,
    MemoryMetadataStore,
    MemoryStorage,
    MetadataStore,
    Policy,
    SQLMetadataStore,
    Storage,
    api_key_auth,
    create_app,
)
from openai_files.errors import BackendUnavailable
from openai_files.metadata.base import Quota, UploadState
from openai_files.storage.local import UNFINISHED_SUFFIX
from openai_files.testing import FaultyMetadataStore, ManualClock
from openai_files.uploads import MOVE_PAUSES

from ..support import BATCH_LINE, serve, stored_files

pytestmark = pytest.mark.anyio

MiB = 1024 * 1024
DAY = 24 * 3600
KEYS = {"sk-alice": "alice", "sk-bob": "bob"}
ALICE = {"authorization": "Bearer sk-alice"}
BOB = {"authorization": "Bearer sk-bob"}
T0 = 1_760_000_000.0
SHA256_COMPOSITE_ETAG = re.compile(r'^"[0-9a-f]{64}-(\d+)"$')


class ReadCountingStorage(LocalStorage):
    """`LocalStorage` that remembers which keys were read through the event loop."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.read: list[str] = []

    async def get(
        self, key: str, *, start: int = 0, end: int | None = None
    ) -> AsyncIterator[bytes]:
        self.read.append(key)
        return await super().get(key, start=start, end=end)

    async def get_unfinished(
        self, key: str, *, start: int = 0, end: int | None = None
    ) -> AsyncIterator[bytes]:
        self.read.append(f"{key}[{start}:{end}]")
        return await super().get_unfinished(key, start=start, end=end)


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def md5(data: bytes) -> str:
    return hashlib.md5(data, usedforsecurity=False).hexdigest()


def form_part(name: str, *, filename: str | None, boundary: str) -> tuple[bytes, bytes]:
    """The head and tail around the value of a one-field multipart body; without ``filename``
    the field is a plain form field, as ``curl -F data=...`` sends it."""
    disposition = f'form-data; name="{name}"'
    head = f"--{boundary}\r\nContent-Disposition: {disposition}"
    if filename is not None:
        head += f'; filename="{filename}"\r\nContent-Type: application/octet-stream'
    return (head + "\r\n\r\n").encode(), f"\r\n--{boundary}--\r\n".encode()


def multipart_headers(boundary: str, headers: Mapping[str, str]) -> dict[str, str]:
    return {**headers, "content-type": f"multipart/form-data; boundary={boundary}"}


def error_of(response: httpx.Response) -> dict[str, Any]:
    body = response.json()
    assert set(body) == {"error"}, body
    error: dict[str, Any] = body["error"]
    assert set(error) == {"message", "type", "param", "code"}, error
    return error


def assert_refused(
    response: httpx.Response,
    status: int,
    *,
    param: str | None = None,
    code: str | None = None,
    mentions: str | None = None,
) -> dict[str, Any]:
    assert response.status_code == status, response.text
    error = error_of(response)
    if status < 500:
        assert error["type"] == "invalid_request_error", error
    if param is not None:
        assert error["param"] == param, error
    if code is not None:
        assert error["code"] == code, error
    if mentions is not None:
        assert mentions in error["message"], error
    return error


@dataclass
class Api:
    """Raw HTTP against the app in process, as Alice unless told otherwise."""

    service: FilesService
    http: httpx.AsyncClient
    clock: ManualClock
    defaults: dict[str, Any] = field(
        default_factory=lambda: {
            "filename": "data.bin",
            "purpose": "assistants",
            "mime_type": "application/octet-stream",
        }
    )

    async def create(self, headers: Mapping[str, str] = ALICE, **fields: Any) -> httpx.Response:
        return await self.http.post(
            "/v1/uploads", json={**self.defaults, **fields}, headers=headers
        )

    async def created(self, **fields: Any) -> dict[str, Any]:
        response = await self.create(**fields)
        assert response.status_code == 200, response.text
        upload: dict[str, Any] = response.json()
        assert upload["status"] == "pending"
        return upload

    async def add_part(
        self, upload_id: str, data: bytes, headers: Mapping[str, str] = ALICE
    ) -> httpx.Response:
        return await self.http.post(
            f"/v1/uploads/{upload_id}/parts",
            files={"data": ("upload", data, "application/octet-stream")},
            headers=headers,
        )

    async def part(self, upload_id: str, data: bytes) -> str:
        response = await self.add_part(upload_id, data)
        assert response.status_code == 200, response.text
        part = response.json()
        assert part["object"] == "upload.part"
        assert part["upload_id"] == upload_id
        assert part["id"].startswith("part_")
        part_id: str = part["id"]
        return part_id

    async def complete(
        self,
        upload_id: str,
        part_ids: Any,
        *,
        md5: str | None = None,
        headers: Mapping[str, str] = ALICE,
    ) -> httpx.Response:
        body: dict[str, Any] = {"part_ids": part_ids}
        if md5 is not None:
            body["md5"] = md5
        return await self.http.post(f"/v1/uploads/{upload_id}/complete", json=body, headers=headers)

    async def completed(
        self, upload_id: str, part_ids: list[str], *, md5: str | None = None
    ) -> dict[str, Any]:
        response = await self.complete(upload_id, part_ids, md5=md5)
        assert response.status_code == 200, response.text
        upload: dict[str, Any] = response.json()
        assert upload["status"] == "completed"
        assert upload["file"] is not None
        return upload

    async def cancel(self, upload_id: str, headers: Mapping[str, str] = ALICE) -> httpx.Response:
        return await self.http.post(f"/v1/uploads/{upload_id}/cancel", headers=headers)

    async def files(self, headers: Mapping[str, str] = ALICE) -> list[dict[str, Any]]:
        response = await self.http.get("/v1/files", headers=headers)
        assert response.status_code == 200, response.text
        data: list[dict[str, Any]] = response.json()["data"]
        return data

    async def content(self, file_id: str) -> httpx.Response:
        response = await self.http.get(f"/v1/files/{file_id}/content", headers=ALICE)
        assert response.status_code == 200, response.text
        return response

    async def upload(self, data: bytes, sizes: list[int], **fields: Any) -> dict[str, Any]:
        """Create an upload of ``data``, send it in parts of ``sizes`` and complete it."""
        upload = await self.created(bytes=len(data), **fields)
        part_ids, offset = [], 0
        for size in sizes:
            part_ids.append(await self.part(upload["id"], data[offset : offset + size]))
            offset += size
        assert offset == len(data)
        return await self.completed(upload["id"], part_ids)


@asynccontextmanager
async def running(
    storage: Storage,
    metadata: MetadataStore,
    *,
    policy: Policy | None = None,
    clock: ManualClock | None = None,
) -> AsyncIterator[Api]:
    clock = clock or ManualClock(T0)
    async with FilesService(storage, metadata, policy=policy, clock=clock) as service:
        app = create_app(service, auth=api_key_auth(KEYS))
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://files.test") as http:
            yield Api(service, http, clock)


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[Api]:
    """The embedded deployment (local disk and SQLite) under a clock that stands still."""
    storage = LocalStorage(tmp_path / "blobs")
    metadata = SQLMetadataStore(f"sqlite+aiosqlite:///{tmp_path / 'files.db'}")
    async with running(storage, metadata) as started:
        yield started


async def held_keys(storage: Storage) -> list[str] | None:
    """Every key the storage holds, temporary files included, or None when it cannot say."""
    if isinstance(storage, LocalStorage):
        return stored_files(storage.root)
    if isinstance(storage, MemoryStorage):
        return storage.keys()
    return None


def appended_file(upload_id: str) -> str:
    """The file in which local storage keeps the parts of an upload that arrive in order."""
    return f"uploads/{upload_id}/.appended{UNFINISHED_SUFFIX}"


async def part_keys(storage: Storage) -> list[str]:
    keys = await held_keys(storage)
    assert keys is not None
    return [key for key in keys if key.startswith("uploads/")]


# -- 1. the official SDK, 300 MiB, both deployment shapes -------------------------------------


@pytest.fixture
def big_file(tmp_path: Path) -> Iterator[tuple[Path, str]]:
    """300 MiB of random bytes on disk, and their sha256."""
    path = tmp_path / "big.bin"
    digest = hashlib.sha256()
    with path.open("wb") as output:
        for _ in range(300 // 4):
            chunk = os.urandom(4 * MiB)
            digest.update(chunk)
            output.write(chunk)
    yield path, digest.hexdigest()
    path.unlink(missing_ok=True)


def test_the_sdk_uploads_a_300_mib_file_in_64_mib_parts(
    backends: tuple[Storage, MetadataStore], big_file: tuple[Path, str]
) -> None:
    path, expected = big_file
    size = path.stat().st_size
    storage = backends[0]
    app = create_app(FilesService(*backends), auth=api_key_auth(KEYS), close_service=True)
    with serve(app) as server:
        client = openai.OpenAI(
            base_url=server.url + "/v1", api_key="sk-alice", max_retries=0, timeout=600
        )
        upload = client.uploads.upload_file_chunked(
            file=path,
            mime_type="application/octet-stream",
            purpose="assistants",
            part_size=64 * MiB,
        )
        assert upload.object == "upload"
        assert upload.status == "completed"
        assert (upload.bytes, upload.filename, upload.purpose) == (size, "big.bin", "assistants")
        assert upload.expires_at == upload.created_at + 3600
        file = upload.file
        assert file is not None
        assert file.id.startswith("file-")
        assert (file.bytes, file.filename, file.purpose) == (size, "big.bin", "assistants")
        assert (file.status, file.expires_at) == ("processed", None)
        assert client.files.retrieve(file.id) == file
        assert [listed.id for listed in client.files.list()] == [file.id]

        digest, received = hashlib.sha256(), 0
        with client.files.with_streaming_response.content(file.id) as response:
            assert response.http_request.headers["accept"] == "application/binary"
            for chunk in response.iter_bytes(MiB):
                digest.update(chunk)
                received += len(chunk)
        assert received == size
        assert digest.hexdigest() == expected

    if isinstance(storage, LocalStorage):  # the parts are gone, only the file remains
        assert len(stored_files(storage.root)) == 1


# -- 2. concurrent, out-of-order parts; md5 ---------------------------------------------------

PART_SIZES = [300_000, 1, 65_536, 1_000_003, 7, 250_000]


async def send_parts_concurrently(api: Api, upload_id: str, parts: list[bytes]) -> list[str]:
    """Send every part at once, in reverse order, each request streamed in two halves: no
    request finishes its body before every one has started, so the server holds them all open
    together. Return the part ids in the order of ``parts``."""
    ids: list[str | None] = [None] * len(parts)
    started, all_started = 0, anyio.Event()

    async def send(index: int) -> None:
        boundary = secrets.token_hex(12)
        head, tail = form_part("data", filename="upload", boundary=boundary)
        half = len(parts[index]) // 2

        async def body() -> AsyncIterator[bytes]:
            nonlocal started
            yield head + parts[index][:half]
            started += 1
            if started == len(parts):
                all_started.set()
            await all_started.wait()
            yield parts[index][half:] + tail

        response = await api.http.post(
            f"/v1/uploads/{upload_id}/parts",
            content=body(),
            headers=multipart_headers(boundary, ALICE),
        )
        assert response.status_code == 200, response.text
        ids[index] = response.json()["id"]

    with anyio.fail_after(60):
        async with anyio.create_task_group() as tasks:
            for index in reversed(range(len(parts))):
                tasks.start_soon(send, index)
    assert all_started.is_set()
    return [part_id for part_id in ids if part_id is not None]


def split(data: bytes, sizes: list[int]) -> list[bytes]:
    parts, offset = [], 0
    for size in sizes:
        parts.append(data[offset : offset + size])
        offset += size
    assert offset == len(data)
    return parts


@pytest.fixture
async def backend_api(backends: tuple[Storage, MetadataStore]) -> AsyncIterator[Api]:
    """Raw HTTP in process over both deployment shapes."""
    async with running(*backends) as started:
        yield started


async def test_parts_sent_concurrently_out_of_order_assemble_in_part_ids_order(
    backend_api: Api,
) -> None:
    api = backend_api
    data = os.urandom(sum(PART_SIZES))
    upload = await api.created(bytes=len(data))
    part_ids = await send_parts_concurrently(api, upload["id"], split(data, PART_SIZES))
    assert len(set(part_ids)) == len(PART_SIZES)

    done = await api.completed(upload["id"], part_ids, md5=md5(data))
    assert (done["id"], done["bytes"]) == (upload["id"], len(data))
    file = done["file"]
    assert (file["bytes"], file["filename"], file["purpose"]) == (
        len(data),
        "data.bin",
        "assistants",
    )
    assert await api.files() == [file]
    assert sha256((await api.content(file["id"])).content) == sha256(data)
    if (keys := await held_keys(api.service.storage)) is not None:
        assert len(keys) == 1  # only the file: its parts were discarded


@pytest.mark.parametrize("retry_md5", ["right", "none"])
async def test_a_wrong_md5_creates_no_file_and_the_upload_can_be_completed_after(
    backend_api: Api, retry_md5: str
) -> None:
    api = backend_api
    data = os.urandom(200_000)
    upload = await api.created(bytes=len(data))
    part_ids = await send_parts_concurrently(api, upload["id"], split(data, [100_000, 100_000]))

    wrong = await api.complete(upload["id"], part_ids, md5=md5(data[::-1]))
    assert_refused(wrong, 400, param="md5")
    assert await api.files() == []
    if (keys := await held_keys(api.service.storage)) is not None:
        assert len(keys) == 2, keys
        assert all(key.startswith("uploads/") for key in keys), keys

    done = await api.completed(
        upload["id"], part_ids, md5=md5(data).upper() if retry_md5 == "right" else None
    )
    assert await api.files() == [done["file"]]
    assert sha256((await api.content(done["file"]["id"])).content) == sha256(data)


# -- 3. refusals -------------------------------------------------------------------------------


async def test_parts_that_do_not_add_up_to_the_declared_bytes_are_refused(api: Api) -> None:
    """Too few bytes: the completion is refused. (Too many cannot happen: a part that would
    pass the declared bytes is refused itself, see test_security_uploads_quota.py.)"""
    sizes = [4, 4]
    upload = await api.created(bytes=10)
    part_ids = [await api.part(upload["id"], b"x" * size) for size in sizes]
    error = assert_refused(await api.complete(upload["id"], part_ids), 400, param="part_ids")
    assert str(sum(sizes)) in error["message"]
    assert "10" in error["message"]
    assert await api.files() == []
    # The upload is still pending: the right parts complete it.
    part_ids.append(await api.part(upload["id"], b"y" * 2))
    done = await api.completed(upload["id"], part_ids)
    assert done["file"]["bytes"] == 10


async def test_part_ids_must_name_each_of_this_uploads_parts_once(api: Api) -> None:
    upload = await api.created(bytes=10)
    first = await api.part(upload["id"], b"a" * 5)
    second = await api.part(upload["id"], b"b" * 5)
    other = await api.created(bytes=5)
    foreign = await api.part(other["id"], b"c" * 5)

    for part_ids in (
        [first, "part_doesnotexist12345678901"],  # unknown
        [first, foreign],  # another upload's part of the right size
        [first, first],  # duplicate, adding up to the declared bytes
        [],  # empty
        first,  # not a list
        [first, 5],  # not a string
        None,
    ):
        assert_refused(await api.complete(upload["id"], part_ids), 400, param="part_ids")
    missing = await api.http.post(f"/v1/uploads/{upload['id']}/complete", json={}, headers=ALICE)
    assert_refused(missing, 400, param="part_ids")
    not_a_string = await api.http.post(
        f"/v1/uploads/{upload['id']}/complete",
        json={"part_ids": [first, second], "md5": 5},
        headers=ALICE,
    )
    assert_refused(not_a_string, 400, param="md5")
    assert await api.files() == []

    done = await api.completed(upload["id"], [second, first])
    assert (await api.content(done["file"]["id"])).content == b"b" * 5 + b"a" * 5
    # The other upload's part was not consumed.
    assert (await api.completed(other["id"], [foreign]))["file"]["bytes"] == 5


async def test_a_cancelled_upload_takes_no_parts_and_cannot_complete_or_cancel_again(
    api: Api,
) -> None:
    upload = await api.created(bytes=4)
    part_id = await api.part(upload["id"], b"abcd")
    cancelled = await api.cancel(upload["id"])
    assert cancelled.status_code == 200, cancelled.text
    body = cancelled.json()
    assert (body["id"], body["object"], body["status"], body["file"]) == (
        upload["id"],
        "upload",
        "cancelled",
        None,
    )
    assert await part_keys(api.service.storage) == []

    assert_refused(await api.add_part(upload["id"], b"abcd"), 400, mentions="cancelled")
    assert_refused(await api.complete(upload["id"], [part_id]), 400, mentions="cancelled")
    assert_refused(await api.cancel(upload["id"]), 400, mentions="cancelled")
    assert await api.files() == []
    assert await held_keys(api.service.storage) == []


async def test_a_completed_upload_takes_no_parts_and_cannot_complete_or_cancel_again(
    api: Api,
) -> None:
    upload = await api.created(bytes=4)
    part_id = await api.part(upload["id"], b"abcd")
    done = await api.completed(upload["id"], [part_id])

    assert_refused(await api.add_part(upload["id"], b"abcd"), 400, mentions="completed")
    assert_refused(await api.complete(upload["id"], [part_id]), 400, mentions="completed")
    assert_refused(await api.cancel(upload["id"]), 400, mentions="completed")
    # None of that touched the file.
    assert await api.files() == [done["file"]]
    assert (await api.content(done["file"]["id"])).content == b"abcd"
    assert await part_keys(api.service.storage) == []


class LosesTheLastMove(FaultyMetadataStore):
    """A metadata store that fails the next ``fails`` moves of an upload to ``to``, after
    the move took effect when ``lost_reply``, before it otherwise."""

    def __init__(
        self, inner: MetadataStore, *, to: UploadState, lost_reply: bool, fails: int = 1
    ) -> None:
        super().__init__(inner)
        self.to, self.lost_reply, self.fails = to, lost_reply, fails

    async def move_upload(
        self,
        owner: str,
        upload_id: str,
        *,
        from_states: tuple[UploadState, ...],
        to: UploadState,
        file_id: str | None = None,
    ) -> bool:
        if to != self.to or not self.fails:
            return await super().move_upload(
                owner, upload_id, from_states=from_states, to=to, file_id=file_id
            )
        self.fails -= 1
        if self.lost_reply:
            await super().move_upload(
                owner, upload_id, from_states=from_states, to=to, file_id=file_id
            )
        raise BackendUnavailable("The metadata store is unavailable: injected fault.")


async def test_completing_again_after_the_last_state_change_failed_finishes_with_the_same_file(
    tmp_path: Path,
) -> None:
    inner = SQLMetadataStore(f"sqlite+aiosqlite:///{tmp_path / 'files.db'}")
    tries = len(MOVE_PAUSES) + 1
    metadata = LosesTheLastMove(inner, to="completed", lost_reply=False, fails=tries)
    async with running(LocalStorage(tmp_path / "blobs"), metadata) as api:
        upload = await api.created(bytes=8)
        part_ids = [await api.part(upload["id"], b"abcd"), await api.part(upload["id"], b"efgh")]
        assert_refused(await api.complete(upload["id"], part_ids), 503)
        # The file was made, but the upload still says it is being completed.
        (made,) = await api.files()

        done = await api.completed(upload["id"], part_ids)
        assert done["file"] == made
        assert (await api.content(made["id"])).content == b"abcdefgh"
        assert await api.files() == [made]
        assert await part_keys(api.service.storage) == []
        assert_refused(await api.complete(upload["id"], part_ids), 400, mentions="completed")


async def test_a_brief_failure_of_the_last_state_change_is_retried_within_the_request(
    tmp_path: Path,
) -> None:
    inner = SQLMetadataStore(f"sqlite+aiosqlite:///{tmp_path / 'files.db'}")
    metadata = LosesTheLastMove(inner, to="completed", lost_reply=False, fails=len(MOVE_PAUSES))
    async with running(LocalStorage(tmp_path / "blobs"), metadata) as api:
        upload = await api.created(bytes=4)
        done = await api.completed(upload["id"], [await api.part(upload["id"], b"abcd")])
        assert metadata.fails == 0
        assert await api.files() == [done["file"]]
        assert await part_keys(api.service.storage) == []


async def test_a_completion_that_failed_before_its_file_was_made_can_be_completed_again(
    tmp_path: Path,
) -> None:
    inner = SQLMetadataStore(f"sqlite+aiosqlite:///{tmp_path / 'files.db'}")
    metadata = FaultyMetadataStore(inner)
    async with running(LocalStorage(tmp_path / "blobs"), metadata) as api:
        upload = await api.created(bytes=4)
        part_id = await api.part(upload["id"], b"abcd")
        metadata.fail_commit = 1
        assert_refused(await api.complete(upload["id"], [part_id]), 503)
        assert await api.files() == []
        done = await api.completed(upload["id"], [part_id])
        assert (await api.content(done["file"]["id"])).content == b"abcd"


async def test_a_failed_assembly_puts_the_upload_back_even_if_the_first_try_fails(
    tmp_path: Path,
) -> None:
    inner = SQLMetadataStore(f"sqlite+aiosqlite:///{tmp_path / 'files.db'}")
    metadata = LosesTheLastMove(inner, to="pending", lost_reply=False, fails=len(MOVE_PAUSES))
    async with running(LocalStorage(tmp_path / "blobs"), metadata) as api:
        upload = await api.created(bytes=4)
        part_id = await api.part(upload["id"], b"abcd")
        metadata.fail_commit = 1  # the assembly fails, then so do all tries to put it back but one
        assert_refused(await api.complete(upload["id"], [part_id]), 503)
        assert metadata.fails == 0
        done = await api.completed(upload["id"], [part_id])
        assert (await api.content(done["file"]["id"])).content == b"abcd"


async def test_an_upload_left_completing_without_a_file_cannot_be_completed_again(
    tmp_path: Path,
) -> None:
    inner = SQLMetadataStore(f"sqlite+aiosqlite:///{tmp_path / 'files.db'}")
    tries = len(MOVE_PAUSES) + 1
    metadata = LosesTheLastMove(inner, to="pending", lost_reply=False, fails=tries)
    async with running(LocalStorage(tmp_path / "blobs"), metadata) as api:
        upload = await api.created(bytes=4)
        part_id = await api.part(upload["id"], b"abcd")
        # The assembly fails (no file is made) and so does every try to put the upload back to
        # pending: it is left completing with no file to finish it with, as while another
        # request is still assembling it.
        metadata.fail_commit = 1
        assert_refused(await api.complete(upload["id"], [part_id]), 503)
        assert_refused(await api.complete(upload["id"], [part_id]), 400, mentions="being completed")
        assert await api.files() == []


async def test_an_idempotency_key_sent_by_a_client_cannot_claim_an_uploads_file(api: Api) -> None:
    upload = await api.created(bytes=4)
    part_id = await api.part(upload["id"], b"abcd")
    for key in (upload["id"], f"upload {upload['id']}"):
        response = await api.http.post(
            "/v1/files",
            files={"file": ("other.bin", b"wxyz")},
            data={"purpose": "assistants"},
            headers={**ALICE, "idempotency-key": key},
        )
        assert response.status_code == 200, response.text
    done = await api.completed(upload["id"], [part_id])
    assert (await api.content(done["file"]["id"])).content == b"abcd"


@pytest.mark.parametrize("kind", ["memory", "local+sqlite"])
async def test_an_expired_upload_is_refused_and_the_sweeper_discards_its_parts(
    tmp_path: Path, kind: str
) -> None:
    clock = ManualClock(T0)
    storage: Storage
    metadata: MetadataStore
    if kind == "memory":
        storage, metadata = MemoryStorage(clock=clock), MemoryMetadataStore()
    else:
        storage = LocalStorage(tmp_path / "blobs")
        metadata = SQLMetadataStore(f"sqlite+aiosqlite:///{tmp_path / 'files.db'}")
    async with running(storage, metadata, clock=clock) as api:
        upload = await api.created(bytes=10)
        assert upload["expires_at"] == upload["created_at"] + 3600
        first = await api.part(upload["id"], b"a" * 5)
        clock.advance(3599)
        second = await api.part(upload["id"], b"b" * 5)  # one second before it expires
        kept = await api.created(bytes=5)  # a live upload, created later, keeps its part
        kept_part = await api.part(kept["id"], b"k" * 5)
        if kind == "memory":
            assert len(await part_keys(storage)) == 3
            kept_keys = [f"uploads/{kept['id']}/{kept_part}"]
        else:  # the parts of each upload, sent in order, are appended to one file
            assert sorted(await part_keys(storage)) == sorted(
                [appended_file(upload["id"]), appended_file(kept["id"])]
            )
            kept_keys = [appended_file(kept["id"])]

        clock.advance(2)  # 3601 s after creation
        assert_refused(await api.add_part(upload["id"], b"c"), 400, mentions="expired")
        assert_refused(await api.complete(upload["id"], [first, second]), 400, mentions="expired")
        assert await api.files() == []

        report = await api.service.sweep()
        assert report.upload_parts == 2
        assert await part_keys(storage) == kept_keys
        assert_refused(await api.complete(upload["id"], [first, second]), 400, mentions="expired")
        assert (await api.completed(kept["id"], [kept_part]))["file"]["bytes"] == 5
        assert await part_keys(storage) == []


EIGHT_GIB = 8 * 1024**3


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"bytes": 0}, "bytes"),
        ({"bytes": -1}, "bytes"),
        ({"bytes": EIGHT_GIB + 1}, "bytes"),
        ({"bytes": "10"}, "bytes"),
        ({"bytes": True}, "bytes"),
        ({"bytes": 10.0}, "bytes"),
        ({"bytes": None}, "bytes"),
        ({"purpose": "bogus"}, "purpose"),
        ({"purpose": "batch_output"}, "purpose"),
        ({"purpose": ["assistants"]}, "purpose"),
        ({"filename": 42}, "filename"),
        ({"filename": None}, "filename"),
        ({"mime_type": {"type": "text/plain"}}, "mime_type"),
        ({"mime_type": None}, "mime_type"),
        ({"color": "blue"}, "color"),
        ({"expires_after": {"anchor": "created_at", "seconds": 60}}, "expires_after[seconds]"),
        ({"expires_after": {"anchor": "last_use", "seconds": 3600}}, "expires_after[anchor]"),
        ({"expires_after": "soon"}, "expires_after"),
    ],
    ids=lambda value: json.dumps(value) if isinstance(value, dict) else str(value),
)
async def test_create_refuses_bad_parameters_naming_them(
    api: Api, fields: dict[str, Any], param: str
) -> None:
    body = {**api.defaults, "bytes": 10, **fields}
    body = {name: value for name, value in body.items() if value is not None}
    response = await api.http.post("/v1/uploads", json=body, headers=ALICE)
    assert_refused(response, 400, param=param)


async def test_create_accepts_exactly_8_gib_and_refuses_bodies_that_are_not_json_objects(
    api: Api,
) -> None:
    upload = await api.created(bytes=EIGHT_GIB)
    assert upload["bytes"] == EIGHT_GIB
    assert (await api.cancel(upload["id"])).status_code == 200
    for content in (b"not json", b"[1, 2]", b'"upload"'):
        response = await api.http.post(
            "/v1/uploads",
            content=content,
            headers={**ALICE, "content-type": "application/json"},
        )
        assert_refused(response, 400)


async def test_max_upload_size_none_holds_the_uploads_api_to_the_file_limit() -> None:
    policy = Policy(max_file_size=1000, max_upload_size=None)
    assert policy.upload_limit == 1000
    async with running(MemoryStorage(), MemoryMetadataStore(), policy=policy) as api:
        assert_refused(await api.create(bytes=1001), 400, param="bytes")
        await api.created(bytes=1000)


@pytest.mark.parametrize("filename", ["", "two\nlines.txt"])
async def test_create_names_filename_for_a_bad_filename(api: Api, filename: str) -> None:
    assert_refused(await api.create(bytes=10, filename=filename), 400, param="filename")


async def test_create_refuses_a_file_type_the_purpose_does_not_accept(api: Api) -> None:
    response = await api.create(bytes=10, purpose="batch", filename="requests.txt")
    error = assert_refused(response, 400, code="unsupported_file_type")
    assert error["param"] in ("filename", "mime_type"), error


async def test_a_part_larger_than_the_policy_allows_is_413_and_leaves_nothing(
    tmp_path: Path,
) -> None:
    storage = LocalStorage(tmp_path / "blobs")
    policy = Policy(max_part_size=1024)
    async with running(storage, MemoryMetadataStore(), policy=policy) as api:
        upload = await api.created(bytes=4096)
        too_large = await api.add_part(upload["id"], os.urandom(1025))
        error = assert_refused(too_large, 413, param="data", code="file_too_large")
        assert "1024" in error["message"]
        assert stored_files(storage.root) == []
        # The upload is still pending and takes parts of the allowed size.
        part_ids = [await api.part(upload["id"], b"p" * 1024) for _ in range(4)]
        done = await api.completed(upload["id"], part_ids)
        assert done["file"]["bytes"] == 4096


async def test_a_part_larger_than_the_upload_is_413(api: Api) -> None:
    upload = await api.created(bytes=10)
    assert_refused(await api.add_part(upload["id"], b"x" * 11), 413, param="data")
    assert await part_keys(api.service.storage) == []


async def test_a_part_over_64_mib_is_413_under_the_default_policy(api: Api) -> None:
    upload = await api.created(bytes=128 * MiB)
    response = await api.add_part(upload["id"], bytes(64 * MiB + 1))
    assert_refused(response, 413, param="data", code="file_too_large")
    storage = api.service.storage
    assert isinstance(storage, LocalStorage)
    assert stored_files(storage.root) == []


async def test_data_sent_as_a_plain_form_field_is_the_part(api: Api) -> None:
    text = b"aHR0cHM6Ly9hcGkub3BlbmFpLmNvbS92MS91cGxvYWRz"  # as in the spec's curl example
    upload = await api.created(bytes=len(text), filename="links.txt")
    boundary = secrets.token_hex(12)
    head, tail = form_part("data", filename=None, boundary=boundary)
    assert b"filename" not in head
    response = await api.http.post(
        f"/v1/uploads/{upload['id']}/parts",
        content=head + text + tail,
        headers=multipart_headers(boundary, ALICE),
    )
    assert response.status_code == 200, response.text
    done = await api.completed(upload["id"], [response.json()["id"]])
    assert (await api.content(done["file"]["id"])).content == text


async def test_a_part_request_without_data_is_400(api: Api) -> None:
    upload = await api.created(bytes=10)
    path = f"/v1/uploads/{upload['id']}/parts"
    no_data = await api.http.post(
        path, files={"file": ("upload", b"0123456789")}, data={"purpose": "x"}, headers=ALICE
    )
    assert_refused(no_data, 400, param="data")
    not_a_form = await api.http.post(path, json={"data": "0123456789"}, headers=ALICE)
    assert_refused(not_a_form, 400)
    assert await part_keys(api.service.storage) == []


@pytest.mark.parametrize("rest", ["a second data field", "a truncated form"])
async def test_a_part_request_refused_after_its_data_leaves_no_part_behind(
    api: Api, rest: str
) -> None:
    """A 400 answer to a part request means no part was added: the client never learns a part
    id, so a part kept anyway would only occupy storage until the upload ends."""
    upload = await api.created(bytes=10)
    boundary = secrets.token_hex(12)
    head, tail = form_part("data", filename="upload", boundary=boundary)
    body = head + b"0123456789" + tail.removesuffix(b"--\r\n") + b"\r\n"
    if rest == "a second data field":
        second, end = form_part("data", filename="again", boundary=boundary)
        body += second.removeprefix(f"--{boundary}\r\n".encode()) + b"56789" + end
    else:
        body += b'Content-Disposition: form-data; name="note"\r\n\r\nthe connection dro'
    response = await api.http.post(
        f"/v1/uploads/{upload['id']}/parts",
        content=body,
        headers=multipart_headers(boundary, ALICE),
    )
    assert_refused(response, 400)
    assert await part_keys(api.service.storage) == []
    assert await api.service.metadata.get_parts("alice", upload["id"]) == []


async def test_parts_cannot_pile_up_past_the_upload_maximum(tmp_path: Path) -> None:
    """ "Each Part can be at most 64 MB, and you can add Parts until you hit the Upload maximum
    of 8 GB": what an upload stores in parts is bounded, whatever it declared."""
    storage = LocalStorage(tmp_path / "blobs")
    policy = Policy(max_upload_size=1000, max_part_size=600)
    async with running(storage, MemoryMetadataStore(), policy=policy) as api:
        upload = await api.created(bytes=1000)
        await api.part(upload["id"], b"a" * 600)
        await api.part(upload["id"], b"b" * 400)
        response = await api.add_part(upload["id"], b"c" * 600)
        assert response.status_code in (400, 413), response.text
        assert error_of(response)["type"] == "invalid_request_error"
        assert await part_keys(storage) == [appended_file(upload["id"])]
        assert (storage.root / appended_file(upload["id"])).stat().st_size == 1000


# -- 4. another owner's upload ------------------------------------------------------------------


async def test_another_owners_upload_is_404_exactly_like_a_missing_one(api: Api) -> None:
    upload = await api.created(bytes=5)
    part_id = await api.part(upload["id"], b"hello")
    missing = "upload_doesnotexist0123456789"

    def expected(upload_id: str) -> dict[str, Any]:
        return {
            "error": {
                "message": f"No such Upload object: {upload_id}",
                "type": "invalid_request_error",
                "param": "upload_id",
                "code": "upload_not_found",
            }
        }

    for upload_id, headers in ((upload["id"], BOB), (missing, ALICE), (missing, BOB)):
        for response in (
            await api.add_part(upload_id, b"HELLO", headers=headers),
            await api.complete(upload_id, [part_id], headers=headers),
            await api.cancel(upload_id, headers=headers),
        ):
            assert response.status_code == 404, response.text
            assert response.json() == expected(upload_id)

    # Bob cannot use Alice's part in an upload of his own either.
    bobs = await api.create(headers=BOB, bytes=5)
    assert bobs.status_code == 200, bobs.text
    refused = await api.complete(bobs.json()["id"], [part_id], headers=BOB)
    assert_refused(refused, 400, param="part_ids")
    assert await api.files(headers=BOB) == []

    # Alice's upload is untouched: still pending, with only her part.
    done = await api.completed(upload["id"], [part_id])
    assert (await api.content(done["file"]["id"])).content == b"hello"


# -- 5. the produced file obeys the rules of POST /v1/files --------------------------------------


async def test_a_batch_upload_of_invalid_jsonl_is_refused_and_creates_no_file(api: Api) -> None:
    data = BATCH_LINE + b"this is not json\n"
    upload = await api.created(
        bytes=len(data), purpose="batch", filename="requests.jsonl", mime_type="application/jsonl"
    )
    part_id = await api.part(upload["id"], data)
    refused = await api.complete(upload["id"], [part_id])
    assert_refused(refused, 400, code="invalid_file")
    assert await api.files() == []
    assert await held_keys(api.service.storage) == [appended_file(upload["id"])]
    cancelled = await api.cancel(upload["id"])
    assert cancelled.json()["status"] == "cancelled"
    assert await held_keys(api.service.storage) == []


async def test_a_batch_upload_of_valid_jsonl_is_processed_and_expires_in_30_days(
    api: Api,
) -> None:
    data = batch_lines(2)
    done = await api.upload(
        data,
        [len(BATCH_LINE), len(data) - len(BATCH_LINE)],
        purpose="batch",
        filename="requests.jsonl",
        mime_type="application/jsonl",
    )
    file = done["file"]
    assert (file["purpose"], file["status"], file["status_details"]) == ("batch", "processed", None)
    assert file["expires_at"] == file["created_at"] + 30 * DAY
    retrieved = await api.http.get(f"/v1/files/{file['id']}", headers=ALICE)
    assert retrieved.json() == file
    assert (await api.content(file["id"])).content == data


async def test_a_byte_quota_smaller_than_the_declared_bytes_refuses_the_upload(
    tmp_path: Path,
) -> None:
    policy = Policy(quota=Quota(max_bytes=1000))
    storage = LocalStorage(tmp_path / "blobs")
    async with running(storage, MemoryMetadataStore(), policy=policy) as api:
        assert_refused(await api.create(bytes=1001), 400, code="quota_exceeded")
        stored = await api.http.post(
            "/v1/files",
            files={"file": ("a.txt", b"a" * 600)},
            data={"purpose": "assistants"},
            headers=ALICE,
        )
        assert stored.status_code == 200, stored.text
        assert_refused(await api.create(bytes=401), 400, code="quota_exceeded")
        # Exactly what is left fits, and another owner has a quota of their own.
        done = await api.upload(b"u" * 400, [400])
        assert done["file"]["bytes"] == 400
        assert (await api.create(headers=BOB, bytes=1000)).status_code == 200


@pytest.mark.parametrize(
    ("purpose", "filename", "line"),
    [("assistants", "notes.txt", b"hello\n"), ("batch", "requests.jsonl", BATCH_LINE)],
)
async def test_expires_after_given_at_create_applies_to_the_file(
    api: Api, purpose: str, filename: str, line: bytes
) -> None:
    done = await api.upload(
        line,
        [len(line)],
        purpose=purpose,
        filename=filename,
        expires_after={"anchor": "created_at", "seconds": 7200},
    )
    file = done["file"]
    assert file["expires_at"] == file["created_at"] + 7200
    api.clock.advance(7200)
    assert await api.files() == []


# -- 6. assembly on local disk -----------------------------------------------------------------


def batch_lines(count: int) -> bytes:
    """``count`` valid batch requests, each with its own custom_id."""
    return b"".join(
        BATCH_LINE.replace(b"request-1", f"request-{number}".encode())
        for number in range(1, count + 1)
    )


def composite_etag(parts: list[bytes]) -> str:
    digests = b"".join(hashlib.sha256(part).digest() for part in parts)
    return f'"{hashlib.sha256(digests).hexdigest()}-{len(parts)}"'


@pytest.fixture
async def local_api(tmp_path: Path) -> AsyncIterator[Api]:
    storage = ReadCountingStorage(tmp_path / "blobs")
    async with running(storage, MemoryMetadataStore()) as started:
        yield started


async def test_local_storage_composes_the_parts_without_reading_them(local_api: Api) -> None:
    api = local_api
    storage = api.service.storage
    assert isinstance(storage, ReadCountingStorage)
    data = os.urandom(3 * MiB + 17)
    parts = split(data, [MiB, 2 * MiB, 17])
    upload = await api.created(bytes=len(data))
    part_ids = [await api.part(upload["id"], part) for part in parts]
    done = await api.completed(upload["id"], part_ids)

    assert not any(key.startswith("uploads/") for key in storage.read), storage.read
    content = await api.content(done["file"]["id"])
    assert sha256(content.content) == sha256(data)
    etag = content.headers["etag"]
    assert SHA256_COMPOSITE_ETAG.match(etag), etag
    assert etag == composite_etag(parts)
    assert len(stored_files(storage.root)) == 1  # the parts were discarded
    head = await api.http.head(f"/v1/files/{done['file']['id']}/content", headers=ALICE)
    assert head.headers["etag"] == etag


@pytest.mark.parametrize(
    ("purpose", "filename", "with_md5"),
    [("assistants", "data.bin", True), ("batch", "requests.jsonl", False)],
    ids=["md5", "validated-jsonl"],
)
async def test_local_storage_streams_the_parts_when_the_content_must_be_read(
    local_api: Api, purpose: str, filename: str, with_md5: bool
) -> None:
    api = local_api
    storage = api.service.storage
    assert isinstance(storage, ReadCountingStorage)
    data = batch_lines(1000)
    parts = split(data, [len(data) // 2, len(data) - len(data) // 2])
    upload = await api.created(bytes=len(data), purpose=purpose, filename=filename)
    part_ids = [await api.part(upload["id"], part) for part in parts]
    done = await api.completed(upload["id"], part_ids, md5=md5(data) if with_md5 else None)

    half = len(data) // 2  # the parts arrived in order: both are in one file, read once
    assert [key for key in storage.read if key.startswith("uploads/")] == [
        f"uploads/{upload['id']}/appended[0:{half}]",
        f"uploads/{upload['id']}/appended[{half}:{len(data)}]",
    ]
    content = await api.content(done["file"]["id"])
    assert content.content == data
    assert content.headers["etag"] == f'"{sha256(data)}"'
    assert len(stored_files(storage.root)) == 1


async def test_local_storage_discards_the_parts_after_cancel(local_api: Api) -> None:
    api = local_api
    storage = api.service.storage
    assert isinstance(storage, LocalStorage)
    upload = await api.created(bytes=3 * MiB)
    for _ in range(2):
        await api.part(upload["id"], os.urandom(MiB))
    assert stored_files(storage.root) == [appended_file(upload["id"])]
    assert (await api.cancel(upload["id"])).status_code == 200
    assert stored_files(storage.root) == []
