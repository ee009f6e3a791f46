"""``/healthz`` and ``/readyz``: liveness touches no backend; readiness follows the backends,
down and back, and names the one that failed."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import httpx
import pytest

from openai_files import (
    FilesService,
    MemoryMetadataStore,
    MemoryStorage,
    MetadataStore,
    SQLMetadataStore,
    Storage,
    api_key_auth,
    create_app,
)
from openai_files.http import Probes
from openai_files.testing import FaultyMetadataStore

from ..s3_servers import ACCESS_KEY, REGION, SECRET_KEY, rclone_command, running_server
from ..support import free_port

pytestmark = pytest.mark.anyio


async def client_for(service: FilesService) -> httpx.AsyncClient:
    app = create_app(service, probes=True, auth=lambda request: "alice")
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://files")


async def test_health_and_readiness_answer_200_on_every_shape(
    backends: tuple[Storage, MetadataStore],
) -> None:
    async with FilesService(*backends) as service, await client_for(service) as client:
        health = await client.get("/healthz")
        ready = await client.get("/readyz")
    assert (health.status_code, health.json()) == (200, {"status": "ok"})
    assert ready.status_code == 200
    assert ready.json() == {
        "status": "ready",
        "checks": {"metadata": {"status": "ok"}, "storage": {"status": "ok"}},
    }


async def test_probes_need_no_key_and_are_not_cached_by_clients() -> None:
    service = FilesService(MemoryStorage(), MemoryMetadataStore())
    app = create_app(service, probes=True, auth=api_key_auth({"sk-alice": "alice"}))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://files") as client:
        assert (await client.get("/v1/files")).status_code == 401
        health, ready = await client.get("/healthz"), await client.get("/readyz")
    assert (health.status_code, ready.status_code) == (200, 200)
    assert health.headers["cache-control"] == "no-store"


async def test_readiness_is_503_while_the_database_is_unreachable_and_liveness_stays_200(
    tmp_path: Path,
) -> None:
    url = f"postgresql+asyncpg://postgres:hunter2@127.0.0.1:{free_port()}/files"
    async with (
        FilesService(MemoryStorage(), SQLMetadataStore(url)) as service,
        await client_for(service) as client,
    ):
        ready = await client.get("/readyz")
        health = await client.get("/healthz")
    assert health.status_code == 200
    assert ready.status_code == 503
    checks = ready.json()["checks"]
    assert ready.json()["status"] == "not_ready"
    assert checks["storage"] == {"status": "ok"}
    assert checks["metadata"]["status"] == "failed"
    assert "Connect call failed" in checks["metadata"]["error"]
    assert "hunter2" not in ready.text


async def test_readiness_is_checked_at_most_once_per_cache_period() -> None:
    metadata = FaultyMetadataStore(MemoryMetadataStore())
    probes = Probes(FilesService(MemoryStorage(), metadata), cache_for=3600)
    assert (await probes.current()).ready
    metadata.down = True
    assert (await probes.current()).ready  # the answer of a moment ago
    fresh = Probes(FilesService(MemoryStorage(), metadata), cache_for=0)
    assert not (await fresh.current()).ready


async def wait_for(client: httpx.AsyncClient, status: int, within: float) -> float:
    """Seconds until ``/readyz`` answers ``status``; fails after ``within`` seconds."""
    started = time.monotonic()
    while (await client.get("/readyz")).status_code != status:
        assert time.monotonic() - started < within, f"/readyz did not turn {status}"
        await anyio.sleep(0.2)
    return time.monotonic() - started


@pytest.fixture
async def s3_storage(tmp_path: Path) -> AsyncIterator[tuple[Storage, int, Path]]:
    from openai_files.storage.s3 import S3Storage

    port = free_port()
    (tmp_path / "root" / "bucket").mkdir(parents=True)
    storage = S3Storage(
        "bucket",
        endpoint=f"http://127.0.0.1:{port}",
        region=REGION,
        access_key_id=ACCESS_KEY,
        secret_access_key=SECRET_KEY,
        allow_http=True,
    )
    yield storage, port, tmp_path / "root"
    await storage.aclose()


async def test_readiness_follows_the_s3_server_down_and_back_while_liveness_stays_200(
    tmp_path: Path, s3_storage: tuple[Storage, int, Path]
) -> None:
    storage, port, root = s3_storage
    endpoint = f"http://127.0.0.1:{port}"
    service = FilesService(storage, MemoryMetadataStore())
    async with await client_for(service) as client:
        with running_server("rclone", rclone_command(port, root), endpoint, tmp_path / "1.log"):
            await wait_for(client, 200, within=10)
        assert await wait_for(client, 503, within=8) < 8
        answer = await client.get("/readyz")
        assert answer.json()["checks"]["storage"]["status"] == "failed"
        assert answer.json()["checks"]["metadata"] == {"status": "ok"}
        assert (await client.get("/healthz")).status_code == 200
        with running_server("rclone", rclone_command(port, root), endpoint, tmp_path / "2.log"):
            await wait_for(client, 200, within=10)
