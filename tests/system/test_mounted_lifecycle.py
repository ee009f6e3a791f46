"""A host that mounts the files app runs the service's lifecycle in its own lifespan, as both
host examples do with `FilesService.running`: the sweeper removes expired files while the host
runs, and the service is closed when it stops."""

from __future__ import annotations

import time
from pathlib import Path

import anyio
import pytest
from starlette.routing import Mount

from openai_files import (
    FileNotFound,
    FilesService,
    LocalStorage,
    ManualClock,
    MemoryMetadataStore,
    MemoryStorage,
    SQLMetadataStore,
)

from .test_docs_examples import load_example

HOUR = 3600


class ClosingStorage(MemoryStorage):
    """Memory storage that remembers whether it was closed."""

    closed = False

    async def aclose(self) -> None:
        self.closed = True
        await super().aclose()


async def expired_file(service: FilesService) -> str:
    created = await service.create(
        "team-a", file=b"old", filename="old.txt", purpose="assistants", expires_after=HOUR
    )
    return created.id


async def gone_within(service: FilesService, owner: str, file_id: str, seconds: float) -> bool:
    with anyio.move_on_after(seconds):
        while True:
            try:
                await service.retrieve(owner, file_id)
            except FileNotFound:
                return True
            await anyio.sleep(0.05)
    return False


@pytest.mark.anyio
async def test_running_sweeps_while_the_block_runs_and_closes_the_service() -> None:
    clock = ManualClock()
    storage = ClosingStorage()
    service = FilesService(storage, MemoryMetadataStore(), clock=clock)
    file_id = await expired_file(service)
    clock.advance(HOUR + 1)
    async with service.running(sweep_interval=60) as running:
        assert running is service
        assert await gone_within(service, "team-a", file_id, 10)
        assert not storage.closed
    assert storage.closed


@pytest.mark.anyio
async def test_running_without_close_leaves_the_service_open() -> None:
    storage = ClosingStorage()
    service = FilesService(storage, MemoryMetadataStore())
    async with service.running(sweep_interval=None, close=False):
        pass
    assert not storage.closed


@pytest.mark.anyio
async def test_the_fastapi_gateway_sweeps_and_closes_its_service(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_FILES_DATA_DIR", str(tmp_path / "module-data"))
    gateway_module = load_example("fastapi_gateway")
    clock = ManualClock()
    storage = ClosingStorage()
    service = FilesService(storage, MemoryMetadataStore(), clock=clock)
    file_id = await expired_file(service)
    clock.advance(HOUR + 1)
    gateway = gateway_module.build_gateway(service)
    async with gateway.router.lifespan_context(gateway):
        assert await gone_within(service, "team-a", file_id, 10)
    assert storage.closed


@pytest.mark.anyio
async def test_the_starlette_host_sweeps_the_files_it_mounts(tmp_path: Path) -> None:
    # A file that expired an hour ago, written where the example keeps its files.
    past = FilesService(
        LocalStorage(tmp_path / "files"),
        SQLMetadataStore(f"sqlite+aiosqlite:///{tmp_path / 'files.db'}"),
        clock=ManualClock(time.time() - 2 * HOUR),
    )
    async with past:
        file_id = await expired_file(past)
    app = load_example("starlette_app").build_app(tmp_path)
    (mount,) = [route for route in app.routes if isinstance(route, Mount)]
    service: FilesService = mount.app.state.service  # type: ignore[attr-defined]
    async with app.router.lifespan_context(app):
        assert await gone_within(service, "team-a", file_id, 10)
    assert [p for p in (tmp_path / "files").rglob("*") if p.is_file()] == []
