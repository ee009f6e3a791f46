"""Lifecycle and policy rules as clients meet them over HTTP."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import httpx
import httpx2
import openai
import pytest
from starlette.applications import Starlette

from openai_files import (
    FilesService,
    LocalStorage,
    Policy,
    SQLMetadataStore,
    api_key_auth,
    create_app,
)
from openai_files.events import FileEvent
from openai_files.http.ratelimit import TokenBucket
from openai_files.policy import FileTypes

from ..support import BATCH_LINE

pytestmark = pytest.mark.anyio

KEYS = {"sk-a": "alice", "sk-b": "bob"}
Build = Callable[..., httpx.AsyncClient]


@pytest.fixture
async def build(tmp_path: Path) -> AsyncIterator[Build]:
    """Clients of apps over fresh services, one per call, with the given policy and options."""
    services: list[FilesService] = []

    def make(
        policy: Policy | None = None, key: str = "sk-a", **options: object
    ) -> httpx.AsyncClient:
        service = FilesService(
            LocalStorage(tmp_path / f"blobs{len(services)}"),
            SQLMetadataStore(f"sqlite+aiosqlite:///{tmp_path / f'files{len(services)}.db'}"),
            policy=policy,
            events=options.pop("events", ()),  # type: ignore[arg-type]
        )
        services.append(service)
        app = create_app(service, auth=api_key_auth(KEYS), **options)  # type: ignore[arg-type]
        return httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app),
            base_url="http://t/v1",
            headers={"authorization": f"Bearer {key}"},
        )

    yield make
    for service in services:
        await service.aclose()


async def upload(
    client: httpx.AsyncClient,
    content: bytes,
    *,
    purpose: str = "batch",
    filename: str = "in.jsonl",
    purpose_first: bool = True,
    headers: dict[str, str] | None = None,
) -> httpx.Response:
    fields: list[tuple[str, tuple[str | None, str | bytes]]] = [
        ("purpose", (None, purpose)),
        ("file", (filename, content)),
    ]
    return await client.post(
        "/files", files=fields if purpose_first else fields[::-1], headers=headers
    )


def service_app(client: httpx.AsyncClient) -> Starlette:
    """The files app behind a client that `build` made."""
    transport = client._transport
    assert isinstance(transport, httpx.ASGITransport)
    assert isinstance(transport.app, Starlette)
    return transport.app


def error(response: httpx.Response) -> dict[str, object]:
    body: dict[str, dict[str, object]] = response.json()
    assert list(body) == ["error"]
    return body["error"]


@pytest.mark.parametrize("purpose_first", [True, False], ids=["purpose-first", "file-first"])
async def test_strict_validation_refuses_bad_jsonl_naming_the_line(
    build: Build, purpose_first: bool
) -> None:
    client = build()
    bad = BATCH_LINE + b'{"custom_id": "x", "method": "POST", "url": "/v1/x"}\n'
    response = await upload(client, bad, purpose_first=purpose_first)
    assert response.status_code == 400
    assert error(response)["code"] == "invalid_file"
    assert "Line 2" in str(error(response)["message"])
    assert "body" in str(error(response)["message"])
    assert (await client.get("/files")).json()["data"] == []


@pytest.mark.parametrize("purpose_first", [True, False], ids=["purpose-first", "file-first"])
async def test_lenient_validation_stores_a_bad_file_with_status_error(
    build: Build, purpose_first: bool
) -> None:
    client = build(Policy(validation="lenient"))
    response = await upload(client, b"[1, 2]\n", purpose_first=purpose_first)
    assert response.status_code == 200
    created = response.json()
    assert created["status"] == "error"
    assert "Line 1" in created["status_details"]
    good = (await upload(client, BATCH_LINE, purpose_first=purpose_first)).json()
    assert (good["status"], good["status_details"]) == ("processed", None)


async def test_validation_off_and_non_jsonl_purposes_are_not_checked(build: Build) -> None:
    off = build(Policy(validation="off"))
    assert (await upload(off, b"not json")).json()["status"] == "processed"
    strict = build()
    response = await upload(strict, b"not json", purpose="assistants", filename="n.txt")
    assert response.json()["status"] == "processed"


async def test_batch_files_must_be_jsonl_by_extension(build: Build) -> None:
    response = await upload(build(), BATCH_LINE, filename="requests.csv")
    assert response.status_code == 400
    assert error(response)["code"] == "unsupported_file_type"
    assert ".jsonl" in str(error(response)["message"])


async def test_per_purpose_size_and_file_types_apply_in_either_field_order(build: Build) -> None:
    policy = Policy(
        max_file_size_by_purpose={"vision": 1000},
        file_types={"vision": FileTypes(extensions=(".png",), media_types=("image/png",))},
    )
    client = build(policy)
    for purpose_first in (True, False):
        big = await upload(
            client, b"x" * 1001, purpose="vision", filename="a.png", purpose_first=purpose_first
        )
        assert big.status_code == 413
        assert error(big)["code"] == "file_too_large"
        wrong = await upload(
            client, b"x", purpose="vision", filename="a.gif", purpose_first=purpose_first
        )
        assert error(wrong)["code"] == "unsupported_file_type"
    fine = await upload(client, b"x" * 1000, purpose="vision", filename="a.png")
    assert fine.status_code == 200
    assert [f["id"] for f in (await client.get("/files")).json()["data"]] == [fine.json()["id"]]


async def test_a_held_file_is_409_without_retry_until_released(
    build: Build, tmp_path: Path
) -> None:
    client = build()
    created = (await upload(client, BATCH_LINE)).json()
    service: FilesService = service_app(client).state.service
    await service.hold("alice", created["id"], "batch_1")
    refused = await client.delete(f"/files/{created['id']}")
    assert refused.status_code == 409
    assert refused.headers["x-should-retry"] == "false"
    assert error(refused)["code"] == "conflict"
    assert (await client.get(f"/files/{created['id']}")).status_code == 200
    assert await service.release("alice", created["id"], "batch_1")
    assert (await client.delete(f"/files/{created['id']}")).json()["deleted"] is True


async def test_the_sdk_does_not_retry_a_delete_of_a_held_file(build: Build) -> None:
    client = build()
    created = (await upload(client, BATCH_LINE)).json()
    service: FilesService = service_app(client).state.service
    await service.hold("alice", created["id"], "batch_1")
    attempts = 0

    async def count(request: httpx2.Request) -> None:
        nonlocal attempts
        attempts += 1

    sdk = openai.AsyncOpenAI(
        base_url="http://t/v1",
        api_key="sk-a",
        max_retries=2,
        http_client=httpx2.AsyncClient(
            transport=httpx2.ASGITransport(app=service_app(client)),
            event_hooks={"request": [count]},
        ),
    )
    with pytest.raises(openai.ConflictError):
        await sdk.files.delete(created["id"])
    assert attempts == 1


async def test_a_retried_upload_with_the_same_idempotency_key_yields_one_file(
    build: Build,
) -> None:
    client = build()
    headers = {"idempotency-key": "upload-42"}
    first = await upload(client, BATCH_LINE, headers=headers)
    again = await upload(client, BATCH_LINE, headers=headers)
    assert first.status_code == again.status_code == 200
    assert again.json() == first.json()
    other = await upload(client, BATCH_LINE, headers={"idempotency-key": "upload-43"})
    assert other.json()["id"] != first.json()["id"]
    listed = [f["id"] for f in (await client.get("/files")).json()["data"]]
    assert sorted(listed) == sorted([first.json()["id"], other.json()["id"]])


async def test_idempotency_keys_belong_to_their_owner(build: Build) -> None:
    alice = build()
    created = (await upload(alice, BATCH_LINE, headers={"idempotency-key": "k"})).json()
    bob = httpx.AsyncClient(
        transport=alice._transport, base_url="http://t/v1", headers={"authorization": "Bearer sk-b"}
    )
    theirs = (await upload(bob, BATCH_LINE, headers={"idempotency-key": "k"})).json()
    assert theirs["id"] != created["id"]


async def test_soft_delete_keeps_a_deleted_record_but_no_content(build: Build) -> None:
    client = build(Policy(soft_delete=True))
    created = (await upload(client, b"hello", purpose="assistants", filename="h.txt")).json()
    assert (await client.delete(f"/files/{created['id']}")).json()["deleted"] is True
    kept = (await client.get(f"/files/{created['id']}")).json()
    assert (kept["id"], kept["status"]) == (created["id"], "deleted")
    assert (await client.get(f"/files/{created['id']}/content")).status_code == 404
    assert (await client.get("/files")).json()["data"] == []
    assert (await client.delete(f"/files/{created['id']}")).status_code == 404


async def test_a_quota_of_files_is_400_quota_exceeded(build: Build) -> None:
    from openai_files.metadata.base import Quota

    client = build(Policy(quota=Quota(max_files=1)))
    assert (await upload(client, b"a", purpose="assistants", filename="a")).status_code == 200
    refused = await upload(client, b"b", purpose="assistants", filename="b")
    assert refused.status_code == 400
    assert error(refused)["code"] == "quota_exceeded"


async def test_a_byte_quota_refuses_the_upload_while_it_streams(build: Build) -> None:
    from openai_files.metadata.base import Quota

    client = build(Policy(quota=Quota(max_bytes=100_000)))
    first = await upload(client, b"a" * 60_000, purpose="assistants", filename="a")
    assert first.status_code == 200
    refused = await upload(client, b"b" * 60_000, purpose="assistants", filename="b")
    assert error(refused)["code"] == "quota_exceeded"
    fits = await upload(client, b"c" * 40_000, purpose="assistants", filename="c")
    assert fits.status_code == 200


async def test_the_rate_limiter_answers_429_with_a_bounded_retry_after(build: Build) -> None:
    clock = [0.0]
    limiter = TokenBucket(rate=0.01, burst=2, clock=lambda: clock[0])
    client = build(rate_limiter=limiter)
    assert (await client.get("/files")).status_code == 200
    assert (await client.get("/files")).status_code == 200
    refused = await client.get("/files")
    assert refused.status_code == 429
    assert error(refused)["code"] == "rate_limit_exceeded"
    assert error(refused)["type"] == "rate_limit_error"
    assert int(refused.headers["retry-after"]) == 60  # 100 s needed, capped at 60
    clock[0] += 100
    assert (await client.get("/files")).status_code == 200


async def test_event_hooks_see_creates_and_deletes_and_a_failing_hook_breaks_nothing(
    build: Build, caplog: pytest.LogCaptureFixture
) -> None:
    seen: list[tuple[str, str]] = []

    async def record(event: FileEvent) -> None:
        seen.append((event.kind, event.file.id))

    def broken(event: FileEvent) -> None:
        raise RuntimeError("billing is down")

    client = build(events=[broken, record])
    with caplog.at_level(logging.ERROR, logger="openai_files"):
        created = (await upload(client, BATCH_LINE)).json()
        assert (await client.delete(f"/files/{created['id']}")).status_code == 200
    assert seen == [("created", created["id"]), ("deleted", created["id"])]
    assert sum("event hook" in r.getMessage() for r in caplog.records) == 2


async def test_clients_cannot_upload_system_purposes_but_the_service_can(build: Build) -> None:
    client = build()
    refused = await upload(client, b"{}", purpose="batch_output", filename="o.jsonl")
    assert error(refused)["param"] == "purpose"
    service: FilesService = service_app(client).state.service
    made = await service.create(
        "alice", file=b"{}\n", filename="out.jsonl", purpose="batch_output", system=True
    )
    listed = (await client.get("/files", params={"purpose": "batch_output"})).json()["data"]
    assert [f["id"] for f in listed] == [made.id]
