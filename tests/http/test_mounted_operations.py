"""A host that mounts the files app gets the same operations pieces: the FastAPI gateway
example serves probes without a key and the files app's metrics at its own ``/metrics``."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from prometheus_client import REGISTRY

pytestmark = pytest.mark.anyio


@pytest.fixture
async def gateway(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[FastAPI]:
    monkeypatch.setenv("OPENAI_FILES_DATA_DIR", str(tmp_path))
    monkeypatch.syspath_prepend(str(Path(__file__).parents[2] / "examples"))
    sys.modules.pop("fastapi_gateway", None)
    import fastapi_gateway

    yield fastapi_gateway.app
    sys.modules.pop("fastapi_gateway", None)


def uploads_counted() -> float:
    labels = {"method": "POST", "route": "/v1/files", "status": "200"}
    return REGISTRY.get_sample_value("openai_files_requests_total", labels) or 0.0


async def test_the_gateway_serves_probes_openly_and_the_files_metrics_in_its_own(
    gateway: FastAPI,
) -> None:
    transport = httpx.ASGITransport(app=gateway)
    before = uploads_counted()
    async with httpx.AsyncClient(transport=transport, base_url="http://gw") as client:
        health, ready = await client.get("/healthz"), await client.get("/readyz")
        assert (await client.get("/v1/files")).status_code == 401  # the rest needs a key
        created = await client.post(
            "/v1/files",
            files={"file": ("a.txt", b"hello")},
            data={"purpose": "assistants"},
            headers={"Authorization": "Bearer sk-team-a"},
        )
        assert created.status_code == 200
        assert created.headers["x-request-id"]
        metrics = await client.get("/metrics")
    assert (health.status_code, health.json()) == (200, {"status": "ok"})
    assert (ready.status_code, ready.json()["status"]) == (200, "ready")
    assert metrics.status_code == 200
    assert "openai_files_requests_total" in metrics.text
    assert "team-a" not in metrics.text
    assert uploads_counted() == before + 1
