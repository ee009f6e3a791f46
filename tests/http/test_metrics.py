"""``/metrics``: requests by route template, their durations, the exact bytes uploaded and
downloaded, refusals; no owner, file id or filename in the exposition; apps apart."""

from __future__ import annotations

import httpx
import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from openai_files import FilesService, MemoryMetadataStore, MemoryStorage, Policy, create_app
from openai_files.http import api_key_auth
from openai_files.metadata.base import Quota

pytestmark = pytest.mark.anyio

OWNER = "tenant-acme-corp"


def client_for(registry: CollectorRegistry, policy: Policy | None = None) -> httpx.AsyncClient:
    service = FilesService(MemoryStorage(), MemoryMetadataStore(), policy=policy)
    app = create_app(service, auth=api_key_auth({"sk-acme": OWNER}), metrics=registry)
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app),
        base_url="http://files",
        headers={"Authorization": "Bearer sk-acme"},
    )


def sample(exposition: str, name: str, **labels: str) -> float:
    """The value of the sample ``name{labels}`` in ``exposition`` (0 when absent)."""
    for family in text_string_to_metric_families(exposition):
        for found in family.samples:
            if found.name == name and found.labels == labels:
                return float(found.value)
    return 0.0


async def test_an_upload_and_a_download_show_as_requests_durations_and_exact_bytes() -> None:
    registry = CollectorRegistry()
    content = b"x" * 12345
    async with client_for(registry) as client:
        created = await client.post(
            "/v1/files",
            files={"file": ("secret-plans.txt", content)},
            data={"purpose": "assistants"},
        )
        file_id = created.json()["id"]
        assert (await client.get(f"/v1/files/{file_id}/content")).content == content
        assert (await client.get(f"/v1/files/{file_id}/content")).status_code == 200
        ranged = await client.get(f"/v1/files/{file_id}/content", headers={"Range": "bytes=0-9"})
        assert ranged.status_code == 206
        assert (await client.get("/v1/files/file-nosuchfile")).status_code == 404
        exposition = (await client.get("/metrics")).text
    route = "/v1/files/{file_id}/content"
    assert (
        sample(
            exposition,
            "openai_files_requests_total",
            method="POST",
            route="/v1/files",
            status="200",
        )
        == 1
    )
    assert (
        sample(exposition, "openai_files_requests_total", method="GET", route=route, status="200")
        == 2
    )
    assert (
        sample(exposition, "openai_files_requests_total", method="GET", route=route, status="206")
        == 1
    )
    assert (
        sample(
            exposition,
            "openai_files_requests_total",
            method="GET",
            route="/v1/files/{file_id}",
            status="404",
        )
        == 1
    )
    assert (
        sample(exposition, "openai_files_request_duration_seconds_count", method="GET", route=route)
        == 3
    )
    assert (
        sample(
            exposition,
            "openai_files_request_duration_seconds_bucket",
            method="GET",
            route=route,
            le="+Inf",
        )
        == 3
    )
    assert sample(exposition, "openai_files_uploaded_bytes_total") == 12345
    assert sample(exposition, "openai_files_downloaded_bytes_total") == 2 * 12345 + 10
    assert sample(exposition, "openai_files_uploads_in_flight") == 0
    assert OWNER not in exposition
    assert file_id not in exposition
    assert "secret-plans" not in exposition


async def test_parts_of_the_uploads_api_count_as_uploaded_bytes() -> None:
    registry = CollectorRegistry()
    async with client_for(registry) as client:
        upload = await client.post(
            "/v1/uploads",
            json={
                "filename": "a.bin",
                "purpose": "assistants",
                "bytes": 700,
                "mime_type": "text/plain",
            },
        )
        upload_id = upload.json()["id"]
        for size in (300, 400):
            part = await client.post(
                f"/v1/uploads/{upload_id}/parts", files={"data": ("p", b"y" * size)}
            )
            assert part.status_code == 200
        exposition = (await client.get("/metrics")).text
    assert sample(exposition, "openai_files_uploaded_bytes_total") == 700
    assert (
        sample(
            exposition,
            "openai_files_requests_total",
            method="POST",
            route="/v1/uploads/{upload_id}/parts",
            status="200",
        )
        == 2
    )


async def test_quota_refusals_are_counted_by_reason() -> None:
    registry = CollectorRegistry()
    policy = Policy(quota=Quota(max_files=1))
    async with client_for(registry, policy) as client:
        for _ in range(3):
            await client.post(
                "/v1/files", files={"file": ("a.txt", b"a")}, data={"purpose": "assistants"}
            )
        exposition = (await client.get("/metrics")).text
    assert sample(exposition, "openai_files_refusals_total", reason="quota_exceeded") == 2


async def test_two_apps_with_their_own_registries_count_apart() -> None:
    first, second = CollectorRegistry(), CollectorRegistry()
    async with client_for(first) as one, client_for(second) as other:
        await one.get("/v1/files")
        await one.get("/v1/files")
        await other.get("/v1/files")
        one_text = (await one.get("/metrics")).text
        other_text = (await other.get("/metrics")).text
    labels = {"method": "GET", "route": "/v1/files", "status": "200"}
    assert sample(one_text, "openai_files_requests_total", **labels) == 2
    assert sample(other_text, "openai_files_requests_total", **labels) == 1


async def test_paths_no_route_matches_share_one_label() -> None:
    registry = CollectorRegistry()
    async with client_for(registry) as client:
        for n in range(3):
            await client.get(f"/no/such/path/{n}")
        exposition = (await client.get("/metrics")).text
    assert (
        sample(
            exposition, "openai_files_requests_total", method="GET", route="unmatched", status="404"
        )
        == 3
    )
    assert "/no/such" not in exposition
