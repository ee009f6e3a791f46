"""The HTTP edge over S3: presigned download redirects and an unreachable store."""

from __future__ import annotations

import hashlib
import os
from collections.abc import AsyncIterator, Iterator

import httpx
import openai
import pytest

from openai_files import FilesService, MemoryMetadataStore, api_key_auth, create_app
from openai_files.storage.s3 import S3Storage

from ..s3_servers import S3Server
from ..support import free_port, serve

pytestmark = pytest.mark.anyio


@pytest.fixture
def bucket(moto: S3Server) -> Iterator[str]:
    name = moto.create_bucket()
    yield name
    moto.remove_bucket(name)


def test_presigned_downloads_redirect_to_the_store_and_the_sdk_follows(
    moto: S3Server, bucket: str
) -> None:
    service = FilesService(moto.storage(bucket, prefix="files/"), MemoryMetadataStore())
    app = create_app(service, auth=api_key_auth({"sk-a": "a"}), presigned_downloads=60)
    data = os.urandom(300_000)
    with serve(app) as server:
        client = openai.OpenAI(base_url=server.url + "/v1", api_key="sk-a", max_retries=0)
        created = client.files.create(file=("p.bin", data), purpose="assistants")
        raw = httpx.get(
            f"{server.url}/v1/files/{created.id}/content",
            headers={"authorization": "Bearer sk-a"},
        )
        assert raw.status_code == 307
        location = raw.headers["location"]
        assert location.startswith(moto.endpoint)
        assert "X-Amz-Signature" in location
        downloaded = client.files.content(created.id).content
        assert hashlib.sha256(downloaded).digest() == hashlib.sha256(data).digest()
        other = httpx.get(
            f"{server.url}/v1/files/{created.id}/content",
            headers={"authorization": "Bearer sk-a-wrong"},
        )
        assert other.status_code == 401


@pytest.fixture
async def unreachable() -> AsyncIterator[FilesService]:
    storage = S3Storage(
        "bucket",
        endpoint=f"http://127.0.0.1:{free_port()}",
        region="us-east-1",
        access_key_id="k",
        secret_access_key="s",
        allow_http=True,
        max_retries=0,
    )
    async with FilesService(storage, MemoryMetadataStore()) as service:
        yield service


async def test_an_unreachable_store_is_503_backend_unavailable_and_stores_nothing(
    unreachable: FilesService,
) -> None:
    app = create_app(unreachable)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://t"
    ) as client:
        response = await client.post(
            "/v1/files", files={"file": ("a.txt", b"hello")}, data={"purpose": "assistants"}
        )
        assert response.status_code == 503
        error = response.json()["error"]
        assert (error["type"], error["code"]) == ("server_error", "backend_unavailable")
        assert "S3 endpoint could not be reached" in error["message"]
        assert (await client.get("/v1/files")).json()["data"] == []
