"""`LocalStorage.get` opens a file and reads its first block in one go: a range that ends
within that block is closed before its chunks are iterated; a longer one stays open until it
is read to the end or closed."""

from __future__ import annotations

import os
import threading
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from openai_files import LocalStorage
from openai_files.errors import BackendUnavailable
from openai_files.storage.local import OPENER_THREADS

pytestmark = pytest.mark.anyio

BLOCK = 64
DATA = bytes(range(200))
OPENERS = "openai-files-local-opener"


async def chunks_of(data: bytes) -> AsyncIterator[bytes]:
    yield data


def open_descriptors(path: Path) -> list[str]:
    """This process's descriptors open on ``path``."""
    found = []
    for descriptor in os.listdir("/proc/self/fd"):
        try:
            if os.readlink(f"/proc/self/fd/{descriptor}") == str(path):
                found.append(descriptor)
        except FileNotFoundError:  # the descriptor of the listing itself, now closed
            continue
    return found


@pytest.fixture
async def storage(tmp_path: Path) -> AsyncIterator[LocalStorage]:
    storage = LocalStorage(tmp_path, block_size=BLOCK, fsync=False)
    await storage.put("k/small", chunks_of(DATA[:10]))
    await storage.put("k/large", chunks_of(DATA))
    yield storage
    await storage.aclose()


async def test_a_file_within_one_block_is_closed_before_its_chunks_are_read(
    storage: LocalStorage,
) -> None:
    chunks = await storage.get("k/small")
    assert open_descriptors(storage.path_for("k/small")) == []
    assert [chunk async for chunk in chunks] == [DATA[:10]]


async def test_a_range_within_the_first_block_of_a_large_file_is_closed_at_once(
    storage: LocalStorage,
) -> None:
    chunks = await storage.get("k/large", start=70, end=80)
    assert open_descriptors(storage.path_for("k/large")) == []
    assert [chunk async for chunk in chunks] == [DATA[70:80]]


async def test_a_file_longer_than_a_block_stays_open_until_it_is_closed(
    storage: LocalStorage,
) -> None:
    path = storage.path_for("k/large")
    chunks = await storage.get("k/large")
    assert len(open_descriptors(path)) == 1
    assert await anext(chunks) == DATA[:BLOCK]
    await chunks.aclose()  # type: ignore[attr-defined]
    assert open_descriptors(path) == []


@pytest.mark.parametrize(
    ("start", "end"),
    [
        *[(0, None), (0, BLOCK), (0, BLOCK + 1), (BLOCK - 1, BLOCK), (BLOCK, 2 * BLOCK)],
        *[(3, 3), (100, None), (199, None), (200, None), (250, None), (190, 400)],
        (0, 2 * BLOCK + 5),
    ],
)
async def test_every_range_reads_its_bytes_in_blocks_and_closes_the_file(
    storage: LocalStorage, start: int, end: int | None
) -> None:
    chunks = [chunk async for chunk in await storage.get("k/large", start=start, end=end)]
    assert b"".join(chunks) == DATA[start:end]
    assert all(0 < len(chunk) <= BLOCK for chunk in chunks)
    assert open_descriptors(storage.path_for("k/large")) == []


async def test_an_os_failure_to_open_is_backend_unavailable(storage: LocalStorage) -> None:
    with pytest.raises(BackendUnavailable, match="Local storage failed"):
        await storage.get("k")  # a directory


async def test_closing_ends_the_opener_threads_and_a_later_read_starts_them(
    tmp_path: Path,
) -> None:
    storage = LocalStorage(tmp_path, block_size=BLOCK, fsync=False)
    await storage.put("k/small", chunks_of(DATA[:10]))
    before = set(threading.enumerate())
    await storage.get("k/small")
    started = [t for t in set(threading.enumerate()) - before if t.name.startswith(OPENERS)]
    assert len(started) == OPENER_THREADS
    await storage.aclose()
    assert not [t for t in started if t.is_alive()]
    assert [chunk async for chunk in await storage.get("k/small")] == [DATA[:10]]
    await storage.aclose()
