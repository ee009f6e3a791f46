"""``X-Request-ID`` on every response, and on the library's own log records while a request is
served; the sweeper's runs in the metrics."""

from __future__ import annotations

import logging

import anyio
import httpx
import pytest
from prometheus_client import CollectorRegistry

from openai_files import FilesService, ManualClock, MemoryMetadataStore, MemoryStorage, create_app
from openai_files._outage_log import OutageLog
from openai_files.http import RequestIdFilter
from openai_files.testing import FaultyMetadataStore

pytestmark = pytest.mark.anyio


async def test_a_request_id_is_taken_from_the_request_or_made_and_always_sent_back() -> None:
    app = create_app(FilesService(MemoryStorage(), MemoryMetadataStore()))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://files") as client:
        given = await client.get("/v1/files", headers={"X-Request-ID": "abc"})
        unknown = await client.get("/nowhere", headers={"X-Request-ID": "req-42"})
        made = [(await client.get("/v1/files")).headers["x-request-id"] for _ in range(3)]
        refused = await client.get("/v1/files", headers={"X-Request-ID": "has space"})
    assert given.headers["x-request-id"] == "abc"
    assert unknown.status_code == 404
    assert unknown.headers["x-request-id"] == "req-42"
    assert len(set(made)) == 3
    assert all(made)
    assert refused.headers["x-request-id"] not in ("has space", "")


async def test_the_library_s_log_records_carry_the_request_id(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    from openai_files.http import app as edge

    monkeypatch.setattr(edge, "outages", OutageLog(edge.log))
    caplog.handler.addFilter(RequestIdFilter())
    metadata = FaultyMetadataStore(MemoryMetadataStore())
    metadata.down = True
    app = create_app(FilesService(MemoryStorage(), metadata))
    transport = httpx.ASGITransport(app=app)
    with caplog.at_level(logging.ERROR, logger="openai_files"):
        async with httpx.AsyncClient(transport=transport, base_url="http://files") as client:
            answer = await client.get("/v1/files", headers={"X-Request-ID": "lib-1"})
    assert answer.status_code == 503
    failures = [r for r in caplog.records if "a backend failed" in r.getMessage()]
    assert [getattr(r, "request_id", None) for r in failures] == ["lib-1"]


async def test_sweeper_runs_and_the_files_they_remove_are_counted() -> None:
    clock = ManualClock(1_800_000_000)
    service = FilesService(MemoryStorage(), MemoryMetadataStore(), clock=clock)
    await service.create("a", file=b"x", filename="a.txt", purpose="assistants", expires_after=3600)
    clock.advance(3601)
    registry = CollectorRegistry()
    app = create_app(service, sweep_interval=0.01, metrics=registry)
    async with app.router.lifespan_context(app):
        with anyio.fail_after(20):
            # Polled: the sweeper reports to the metrics and to nothing a test could wait on.
            while not registry.get_sample_value(  # noqa: ASYNC110
                "openai_files_sweeps_total", {"result": "ok"}
            ):
                await anyio.sleep(0.01)
    assert registry.get_sample_value("openai_files_swept_files_total") == 1
    assert registry.get_sample_value("openai_files_sweeps_total", {"result": "failed"}) is None
