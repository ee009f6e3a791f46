"""An ``Idempotency-Key`` holds for 24 hours to the second, on every metadata store.

The clock is a `ManualClock`: the key is used again just inside the window (the first file is
the answer), just past it (a new file, without a conflict on the key), and once more after that
(the new file is the answer now)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from openai_files import FilesService, ManualClock, MemoryStorage

from ..databases import STORE_KINDS, metadata_store

pytestmark = pytest.mark.anyio

WINDOW = 24 * 60 * 60


@pytest.fixture(params=STORE_KINDS)
async def clocked(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[tuple[FilesService, ManualClock]]:
    clock = ManualClock(1_800_000_000)
    async with (
        metadata_store(request.param, tmp_path) as metadata,
        FilesService(MemoryStorage(), metadata, clock=clock) as service,
    ):
        yield service, clock


async def create(service: FilesService, content: bytes, key: str = "report-7") -> str:
    created = await service.create(
        "alice", file=content, filename="r.txt", purpose="assistants", idempotency_key=key
    )
    return created.id


async def test_a_key_answers_with_its_file_until_the_last_second_of_the_window(
    clocked: tuple[FilesService, ManualClock],
) -> None:
    service, clock = clocked
    first = await create(service, b"one")
    clock.advance(WINDOW)
    found = await service.idempotent_file("alice", "report-7")
    assert found is not None
    assert found.id == first
    assert await create(service, b"two") == first
    listed = await service.list("alice")
    assert [file.id for file in listed.data] == [first]


async def test_a_key_past_the_window_makes_a_new_file_which_then_takes_the_key(
    clocked: tuple[FilesService, ManualClock],
) -> None:
    service, clock = clocked
    first = await create(service, b"one")
    clock.advance(WINDOW + 1)
    assert await service.idempotent_file("alice", "report-7") is None
    second = await create(service, b"two")
    assert second != first
    clock.advance(60)
    found = await service.idempotent_file("alice", "report-7")
    assert found is not None
    assert found.id == second
    assert await create(service, b"three") == second
    listed = await service.list("alice", order="asc")
    assert [file.id for file in listed.data] == [first, second]
    assert [file.bytes for file in listed.data] == [3, 3]
