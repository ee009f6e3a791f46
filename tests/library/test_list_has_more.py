"""``has_more`` is false on a page that holds exactly the last files, on every metadata store.

The SDK's auto-paging hides a wrong ``has_more`` (it fetches one empty page more), so the pages
are read here as they are: a page of exactly ``limit`` files with nothing after it says the
list ends there, one file more says it goes on; in one query, read in batches, by offset, and
over HTTP as a client sees it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from openai_files import FilesService, ManualClock, MemoryStorage, Policy, api_key_auth, create_app
from openai_files.models import FileObject

from ..databases import STORE_KINDS, metadata_store

pytestmark = pytest.mark.anyio


@pytest.fixture(params=STORE_KINDS)
async def service(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[FilesService]:
    clock = ManualClock(1_800_000_000)
    policy = Policy(list_offset=True)
    async with (
        metadata_store(request.param, tmp_path) as metadata,
        FilesService(MemoryStorage(), metadata, clock=clock, policy=policy) as files,
    ):
        yield files


async def add(service: FilesService, count: int) -> list[str]:
    """``count`` files created in the same second (the clock stands still), in list order:
    by id."""
    ids = []
    for index in range(count):
        created = await service.create(
            "alice", file=b"x", filename=f"{index}.txt", purpose="assistants"
        )
        ids.append(created.id)
    return sorted(ids)


async def read(
    service: FilesService, *, limit: int, batch: int, after: str | None = None
) -> tuple[list[str], bool]:
    pages = await service.list_in_batches(
        "alice", limit=limit, order="asc", after=after, batch=batch
    )
    files: list[FileObject] = [file async for chunk in pages.batches for file in chunk]
    return [file.id for file in files], pages.has_more


async def test_a_page_of_exactly_the_last_files_has_no_more(service: FilesService) -> None:
    ids = await add(service, 5)
    for batch in (2, 5, 100):
        assert await read(service, limit=5, batch=batch) == (ids, False)
        assert await read(service, limit=4, batch=batch) == (ids[:4], True)
        assert await read(service, limit=3, batch=batch, after=ids[1]) == (ids[2:], False)
        assert await read(service, limit=2, batch=batch, after=ids[1]) == (ids[2:4], True)
    page = await service.list("alice", limit=5, order="asc")
    assert ([file.id for file in page.data], page.has_more) == (ids, False)
    page = await service.list("alice", limit=5, order="desc")
    assert ([file.id for file in page.data], page.has_more) == (ids[::-1], False)


async def test_an_offset_page_of_exactly_the_last_files_has_no_more(
    service: FilesService,
) -> None:
    ids = await add(service, 5)
    page = await service.list("alice", limit=3, offset=2, order="asc")
    assert ([file.id for file in page.data], page.has_more, page.total) == (ids[2:], False, 5)
    page = await service.list("alice", limit=2, offset=2, order="asc")
    assert ([file.id for file in page.data], page.has_more, page.total) == (ids[2:4], True, 5)


async def test_a_client_sees_has_more_false_on_a_full_last_page(service: FilesService) -> None:
    ids = await add(service, 3)
    app = create_app(service, auth=api_key_auth({"sk-a": "alice"}))
    transport = httpx.ASGITransport(app=app)
    headers = {"authorization": "Bearer sk-a"}
    async with httpx.AsyncClient(
        transport=transport, base_url="http://t/v1", headers=headers
    ) as client:
        body = (await client.get("/files", params={"limit": 3, "order": "asc"})).json()
        assert ([file["id"] for file in body["data"]], body["has_more"]) == (ids, False)
        body = (await client.get("/files", params={"limit": 2, "order": "asc"})).json()
        assert ([file["id"] for file in body["data"]], body["has_more"]) == (ids[:2], True)
