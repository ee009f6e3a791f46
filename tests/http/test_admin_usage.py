"""``GET /admin/usage``: every owner's files and bytes, paged by owner, for the admin key only,
and no route at all without one."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from openai_files import (
    FilesService,
    MemoryMetadataStore,
    MemoryStorage,
    MetadataStore,
    Storage,
    api_key_auth,
    create_app,
)

pytestmark = pytest.mark.anyio

ADMIN = {"Authorization": "Bearer sk-admin-0123456789"}
KEYS = {"sk-alice": "alice", "sk-bob": "bob"}


@pytest.fixture
async def service(backends: tuple[Storage, MetadataStore]) -> AsyncIterator[FilesService]:
    async with FilesService(*backends) as service:
        yield service


def client_for(
    service: FilesService, admin_key: str | None = "sk-admin-0123456789"
) -> httpx.AsyncClient:
    app = create_app(service, auth=api_key_auth(KEYS), admin_key=admin_key)
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://files")


async def test_usage_shows_files_and_bytes_after_uploads_and_deletes(service: FilesService) -> None:
    async with client_for(service) as client:
        ids = []
        for size in (10, 20, 30):
            created = await client.post(
                "/v1/files",
                files={"file": ("a.txt", b"a" * size)},
                data={"purpose": "assistants"},
                headers={"Authorization": "Bearer sk-alice"},
            )
            ids.append(created.json()["id"])
        await client.post(
            "/v1/files",
            files={"file": ("b.txt", b"b" * 7)},
            data={"purpose": "assistants"},
            headers={"Authorization": "Bearer sk-bob"},
        )
        deleted = await client.delete(
            f"/v1/files/{ids[1]}", headers={"Authorization": "Bearer sk-alice"}
        )
        assert deleted.status_code == 200
        every = await client.get("/admin/usage", headers=ADMIN)
        alice = await client.get("/admin/usage", params={"owner": "alice"}, headers=ADMIN)
        nobody = await client.get("/admin/usage", params={"owner": "carol"}, headers=ADMIN)
    assert every.status_code == 200
    assert every.json() == {
        "object": "list",
        "data": [
            {"owner": "alice", "files": 2, "bytes": 40, "open_uploads": 0},
            {"owner": "bob", "files": 1, "bytes": 7, "open_uploads": 0},
        ],
        "has_more": False,
    }
    assert alice.json()["data"] == [{"owner": "alice", "files": 2, "bytes": 40, "open_uploads": 0}]
    assert nobody.json()["data"] == [{"owner": "carol", "files": 0, "bytes": 0, "open_uploads": 0}]
    assert (await service.usage("alice")).model_dump() == alice.json()["data"][0]


async def test_usage_pages_through_250_owners_without_skipping_or_repeating() -> None:
    service = FilesService(MemoryStorage(), MemoryMetadataStore())
    owners = sorted(f"team-{n}" for n in range(250))
    for n, owner in enumerate(owners):
        await service.create(owner, file=b"z" * (n + 1), filename="f.txt", purpose="assistants")
    seen: list[dict[str, object]] = []
    pages = 0
    async with client_for(service) as client:
        params: dict[str, str] = {"limit": "100"}
        while True:
            page = (await client.get("/admin/usage", params=params, headers=ADMIN)).json()
            pages += 1
            seen += page["data"]
            if not page["has_more"]:
                break
            params["after"] = page["data"][-1]["owner"]
    assert pages == 3
    assert [row["owner"] for row in seen] == owners
    assert [row["bytes"] for row in seen] == list(range(1, 251))


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer sk-alice"}, {"Authorization": "Bearer sk-admin-wrong"}],
    ids=["no key", "a user key", "a wrong key"],
)
async def test_only_the_admin_key_opens_usage(headers: dict[str, str]) -> None:
    service = FilesService(MemoryStorage(), MemoryMetadataStore())
    async with client_for(service) as client:
        answer = await client.get("/admin/usage", headers=headers)
    assert answer.status_code == 401
    assert answer.json()["error"]["type"] == "authentication_error"
    assert answer.json()["error"]["code"] == "invalid_api_key"


async def test_without_an_admin_key_there_is_no_usage_route() -> None:
    service = FilesService(MemoryStorage(), MemoryMetadataStore())
    async with client_for(service, admin_key=None) as client:
        for headers in ({}, ADMIN, {"Authorization": "Bearer sk-alice"}):
            answer = await client.get("/admin/usage", headers=headers)
            assert answer.status_code == 404
            assert answer.json()["error"]["type"] == "invalid_request_error"


async def test_a_bad_limit_is_a_400_naming_it() -> None:
    service = FilesService(MemoryStorage(), MemoryMetadataStore())
    async with client_for(service) as client:
        answer = await client.get("/admin/usage", params={"limit": "0"}, headers=ADMIN)
    assert answer.status_code == 400
    assert answer.json()["error"]["param"] == "limit"
