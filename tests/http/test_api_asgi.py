"""The API through `httpx.ASGITransport` (no server), alone and mounted in FastAPI and Starlette."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import httpx
import httpx2
import openai
import pytest
from fastapi import FastAPI
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Mount, Route
from starlette.types import ASGIApp

from openai_files import (
    FilesService,
    MemoryMetadataStore,
    MemoryStorage,
    Policy,
    api_key_auth,
    create_app,
    files_routes,
)
from openai_files.http.app import exception_handlers

from ..support import BATCH_LINE

pytestmark = pytest.mark.anyio

KEYS = {"sk-alice": "alice", "sk-bob": "bob"}


def sdk(app: ASGIApp, base_url: str, key: str = "sk-alice") -> openai.AsyncOpenAI:
    """The SDK in process: its own HTTP client (``httpx2``) over an ASGI transport."""
    transport = httpx2.ASGITransport(app=app)
    return openai.AsyncOpenAI(
        base_url=base_url,
        api_key=key,
        max_retries=0,
        http_client=httpx2.AsyncClient(transport=transport, base_url=base_url),
    )


async def round_trip(client: openai.AsyncOpenAI) -> None:
    data = os.urandom(200_000)
    created = await client.files.create(file=("x.bin", data), purpose="user_data")
    assert (await client.files.retrieve(created.id)).bytes == len(data)
    content = (await client.files.content(created.id)).content
    assert hashlib.sha256(content).digest() == hashlib.sha256(data).digest()
    assert [f.id async for f in client.files.list()] == [created.id]
    assert (await client.files.delete(created.id)).deleted
    with pytest.raises(openai.NotFoundError):
        await client.files.retrieve(created.id)


@pytest.mark.parametrize("prefix", ["/v1", ""])
async def test_sdk_through_the_asgi_transport(local_service: FilesService, prefix: str) -> None:
    app = create_app(local_service, auth=api_key_auth(KEYS))
    await round_trip(sdk(app, "http://files.test" + prefix))


async def test_mounted_under_a_prefix_in_starlette_beside_host_routes(
    local_service: FilesService,
) -> None:
    async def health(_: object) -> PlainTextResponse:
        return PlainTextResponse("ok")

    host = Starlette(
        routes=[
            Route("/health", health),
            Mount("/api", app=create_app(local_service, auth=api_key_auth(KEYS))),
        ]
    )
    await round_trip(sdk(host, "http://host.test/api/v1"))
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=host), base_url="http://host.test"
    ) as client:
        assert (await client.get("/health")).text == "ok"


async def test_mounted_at_the_root_of_a_fastapi_app_after_its_own_routes(
    local_service: FilesService,
) -> None:
    host = FastAPI()

    @host.get("/v1/models")
    async def models() -> dict[str, object]:
        return {"object": "list", "data": []}

    host.mount("/", create_app(local_service, auth=api_key_auth(KEYS)))
    await round_trip(sdk(host, "http://host.test/v1"))
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=host), base_url="http://host.test"
    ) as client:
        assert (await client.get("/v1/models")).json() == {"object": "list", "data": []}


async def test_two_owners_are_isolated_through_the_transport(local_service: FilesService) -> None:
    app = create_app(local_service, auth=api_key_auth(KEYS))
    alice, bob = sdk(app, "http://t/v1", "sk-alice"), sdk(app, "http://t/v1", "sk-bob")
    mine = await alice.files.create(file=("a.txt", b"a"), purpose="assistants")
    theirs = await bob.files.create(file=("b.txt", b"b"), purpose="assistants")
    assert [f.id async for f in alice.files.list()] == [mine.id]
    assert [f.id async for f in bob.files.list()] == [theirs.id]
    with pytest.raises(openai.NotFoundError):
        await bob.files.delete(mine.id)
    assert (await alice.files.retrieve(mine.id)).id == mine.id


async def test_fastapi_gateway_example_serves_chat_and_files_per_tenant(gateway: FastAPI) -> None:
    team_a = sdk(gateway, "http://gw/v1", "sk-team-a")
    team_b = sdk(gateway, "http://gw/v1", "sk-team-b")
    await round_trip(team_a)
    created = await team_a.files.create(file=("a.jsonl", BATCH_LINE), purpose="batch")
    assert [f.id async for f in team_b.files.list()] == []
    chat = await team_a.chat.completions.with_raw_response.create(
        model="stub", messages=[{"role": "user", "content": "ping"}]
    )
    assert chat.http_response.json()["tenant"] == "team-a"
    with pytest.raises(openai.AuthenticationError):
        await sdk(gateway, "http://gw/v1", "sk-nobody").files.retrieve(created.id)


@pytest.mark.parametrize("shares_the_service", [True, False])
async def test_files_routes_in_a_hosts_own_router_answer_in_openais_shape(
    tmp_path: Path, shares_the_service: bool
) -> None:
    with pytest.warns(DeprecationWarning, match="file_too_large_status"):
        policy = Policy(max_file_size=10, file_too_large_status=400)
    async with FilesService(MemoryStorage(), MemoryMetadataStore(), policy=policy) as service:

        async def health(_: object) -> PlainTextResponse:
            return PlainTextResponse("ok")

        routes = [Route("/health", health), *files_routes(service, auth=api_key_auth(KEYS))]
        host = Starlette(routes=routes, exception_handlers=exception_handlers)
        if shares_the_service:
            host.state.service = service
        await round_trip_small(sdk(host, "http://host.test/v1"))
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=host), base_url="http://host.test"
        ) as client:
            assert (await client.get("/health")).text == "ok"
            too_large = await client.post(
                "/v1/files",
                headers={"authorization": "Bearer sk-alice"},
                files={"file": ("big.bin", b"x" * 11)},
                data={"purpose": "assistants"},
            )
            missing = await client.get(
                "/v1/files/file-abc", headers={"authorization": "Bearer sk-bob"}
            )
        # The policy's status needs the host to share the service; the shape never changes.
        assert too_large.status_code == (400 if shares_the_service else 413)
        assert too_large.json()["error"]["code"] == "file_too_large"
        assert missing.status_code == 404
        assert set(missing.json()["error"]) == {"message", "type", "param", "code"}


async def round_trip_small(client: openai.AsyncOpenAI) -> None:
    created = await client.files.create(file=("x.bin", b"tiny"), purpose="user_data")
    assert (await client.files.content(created.id)).content == b"tiny"
    assert (await client.files.delete(created.id)).deleted
