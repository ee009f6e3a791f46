"""The status of ``file_too_large`` is HTTP configuration, chosen where the app is built
(`create_app`, `files_routes`, ``openai-files serve``), not part of the `Policy`."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from starlette.applications import Starlette

from openai_files import FilesService, MemoryMetadataStore, MemoryStorage, Policy, create_app
from openai_files.http import exception_handlers, files_routes

from ..support import server_process

pytestmark = pytest.mark.anyio

SMALL = Policy(max_file_size=10)


async def post_too_large(app: Starlette) -> httpx.Response:
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://files.test"
    ) as client:
        return await client.post(
            "/v1/files", files={"file": ("big.bin", b"x" * 11)}, data={"purpose": "assistants"}
        )


@pytest.mark.parametrize("status", [None, 413, 400])
async def test_create_app_answers_a_file_too_large_with_the_status_it_is_given(
    status: int | None,
) -> None:
    service = FilesService(MemoryStorage(), MemoryMetadataStore(), policy=SMALL)
    app = create_app(service, file_too_large_status=status, openapi=True, close_service=True)
    async with app.router.lifespan_context(app):
        response = await post_too_large(app)
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://files.test"
        ) as client:
            document = (await client.get("/openapi.json")).json()
    assert response.status_code == (status or 413)
    assert response.json()["error"]["code"] == "file_too_large"
    create = document["paths"]["/v1/files"]["post"]["responses"]
    assert ("413" in create) == (status != 400)


async def test_files_routes_carry_their_status_to_a_hosts_handlers() -> None:
    async with FilesService(MemoryStorage(), MemoryMetadataStore(), policy=SMALL) as service:
        routes = files_routes(service, file_too_large_status=400)
        host = Starlette(routes=routes, exception_handlers=exception_handlers)
        response = await post_too_large(host)  # no host.state.service needed
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "file_too_large"


def test_only_413_or_400_is_accepted() -> None:
    service = FilesService(MemoryStorage(), MemoryMetadataStore())
    with pytest.raises(ValueError, match="413 or 400"):
        create_app(service, file_too_large_status=422)
    with pytest.raises(ValueError, match="413 or 400"):
        files_routes(service, file_too_large_status=422)


async def test_the_policy_field_is_deprecated_and_still_followed() -> None:
    with pytest.warns(DeprecationWarning, match="create_app or files_routes"):
        policy = Policy(max_file_size=10, file_too_large_status=400)
    service = FilesService(MemoryStorage(), MemoryMetadataStore(), policy=policy)
    app = create_app(service, close_service=True)
    async with app.router.lifespan_context(app):
        assert (await post_too_large(app)).status_code == 400


@pytest.mark.parametrize("how", ["flag", "environment"])
def test_serve_answers_a_file_too_large_with_400_when_told(tmp_path: Path, how: str) -> None:
    args = ["--max-file-size", "10"]
    env = {}
    if how == "flag":
        args += ["--file-too-large-status", "400"]
    else:
        env["OPENAI_FILES_FILE_TOO_LARGE_STATUS"] = "400"
    with server_process(tmp_path, *args, env=env) as server:
        response = httpx.post(
            server.url + "/v1/files",
            files={"file": ("big.bin", b"x" * 11)},
            data={"purpose": "assistants"},
        )
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "file_too_large"
