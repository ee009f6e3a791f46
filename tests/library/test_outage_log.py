"""A backend's failures reach the log with the driver's own message, once per burst, with
credentials masked."""

from __future__ import annotations

import logging

import httpx
import pytest

from openai_files import FilesService, MemoryMetadataStore, MemoryStorage, create_app
from openai_files._outage_log import OutageLog
from openai_files._readiness import driver_message, masked
from openai_files.errors import BackendUnavailable
from openai_files.testing import FaultyMetadataStore, ManualClock


def outage() -> BackendUnavailable:
    try:
        try:
            raise ConnectionRefusedError("connect to postgresql://app:s3cret@db:5432/files failed")
        except ConnectionRefusedError as exc:
            raise BackendUnavailable("The metadata database failed: OSError.") from exc
    except BackendUnavailable as exc:
        return exc


def test_the_driver_s_message_follows_the_library_s_with_the_password_masked() -> None:
    message = driver_message(outage())
    assert message.startswith("The metadata database failed: OSError. (ConnectionRefusedError:")
    assert "postgresql://app:***@db:5432/files" in message
    assert "s3cret" not in message
    assert masked("password=abc token: xyz") == "password=*** token: ***"


def test_a_burst_of_failures_is_one_line_then_one_line_per_period(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = ManualClock(1000)
    log = OutageLog(logging.getLogger("test.outages"), every=30, clock=clock)
    with caplog.at_level(logging.ERROR, logger="test.outages"):
        for _ in range(5):
            log.failed(outage())
        clock.advance(31)
        log.failed(outage())
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 2
    assert "ConnectionRefusedError" in lines[0]
    assert "more failure" not in lines[0]
    assert "(4 more failure(s) since the last line)" in lines[1]


@pytest.mark.anyio
async def test_a_backend_that_fails_under_a_request_is_logged_not_only_answered_503(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    from openai_files.http import app as edge

    monkeypatch.setattr(edge, "outages", OutageLog(edge.log))  # no burst of an earlier test
    metadata = FaultyMetadataStore(MemoryMetadataStore())
    metadata.down = True
    app = create_app(FilesService(MemoryStorage(), metadata))
    transport = httpx.ASGITransport(app=app)
    with caplog.at_level(logging.ERROR, logger="openai_files"):
        async with httpx.AsyncClient(transport=transport, base_url="http://files") as client:
            answer = await client.get("/v1/files")
    assert answer.status_code == 503
    assert any("a backend failed" in r.getMessage() for r in caplog.records)
