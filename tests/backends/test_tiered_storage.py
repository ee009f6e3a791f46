"""`TieredStorage`: the hot tier stays under its bound, a fill that does not finish leaves
nothing behind, and readers of one missing object read the cold tier once."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import pytest

from openai_files import BackendUnavailable, LocalStorage, MemoryStorage
from openai_files.storage.base import Storage
from openai_files.storage.tiered import TieredStorage
from openai_files.testing import FaultyStorage

from ..support import stored_files

pytestmark = pytest.mark.anyio

KB = 1000


async def chunked(data: bytes, size: int = 10 * KB) -> AsyncIterator[bytes]:
    for offset in range(0, len(data), size):
        yield data[offset : offset + size]


async def drain(stream: AsyncIterator[bytes], into: bytearray) -> None:
    async for chunk in stream:
        into += chunk


async def read(storage: Storage, key: str, start: int = 0, end: int | None = None) -> bytes:
    return b"".join([chunk async for chunk in await storage.get(key, start=start, end=end)])


class CountingStorage(LocalStorage):
    """Local disk that counts the reads it opens."""

    gets = 0

    async def get(
        self, key: str, *, start: int = 0, end: int | None = None
    ) -> AsyncIterator[bytes]:
        self.gets += 1
        return await super().get(key, start=start, end=end)


@pytest.fixture
def cold(tmp_path: Path) -> CountingStorage:
    return CountingStorage(tmp_path / "cold", block_size=16 * 1024)


@pytest.fixture
def hot(tmp_path: Path) -> LocalStorage:
    return LocalStorage(tmp_path / "hot", fsync=False)


def hot_bytes(hot: LocalStorage) -> int:
    return sum((hot.root / name).stat().st_size for name in stored_files(hot.root))


async def test_eviction_keeps_the_hot_tier_under_its_bound_least_recent_first(
    hot: LocalStorage, cold: CountingStorage
) -> None:
    tiers = TieredStorage(hot, cold, max_bytes=250 * KB)
    files = {f"aa/bb/f{n}": os.urandom(100 * KB) for n in range(5)}
    for key, data in files.items():
        await tiers.put(key, chunked(data))
    assert stored_files(hot.root) == []  # writes go to the cold tier only
    await read(tiers, "aa/bb/f0")
    await read(tiers, "aa/bb/f1")
    await read(tiers, "aa/bb/f0")  # f1 is now the least recently used
    await read(tiers, "aa/bb/f2")
    assert stored_files(hot.root) == ["aa/bb/f0", "aa/bb/f2"]
    for key, data in files.items():
        assert await read(tiers, key) == data
        assert hot_bytes(hot) <= 250 * KB
    assert tiers.stats.bytes == hot_bytes(hot) == 200 * KB
    assert stored_files(hot.root) == ["aa/bb/f3", "aa/bb/f4"]
    assert tiers.stats.evictions == 5
    assert (tiers.stats.hits, tiers.stats.misses, tiers.stats.fills) == (2, 7, 7)


async def test_an_object_larger_than_the_hot_tier_is_served_and_not_kept(
    hot: LocalStorage, cold: CountingStorage
) -> None:
    tiers = TieredStorage(hot, cold, max_bytes=150 * KB)
    small, large = os.urandom(100 * KB), os.urandom(200 * KB)
    await tiers.put("aa/bb/small", chunked(small))
    await tiers.put("aa/bb/large", chunked(large))
    assert await read(tiers, "aa/bb/small") == small
    assert await read(tiers, "aa/bb/large") == large
    assert await read(tiers, "aa/bb/large") == large
    assert stored_files(hot.root) == []  # the large one evicted the small one, then left
    assert tiers.stats.abandoned_fills == 2
    assert tiers.stats.bytes == 0


async def test_a_cold_read_that_fails_midway_leaves_nothing_in_the_hot_tier(
    hot: LocalStorage, cold: CountingStorage
) -> None:
    faulty = FaultyStorage(cold)
    tiers = TieredStorage(hot, faulty, max_bytes=10_000 * KB)
    data = os.urandom(500 * KB)
    await tiers.put("aa/bb/file", chunked(data))
    faulty.fail_read_at_chunk = 5
    received = bytearray()
    with pytest.raises(BackendUnavailable):
        await drain(await tiers.get("aa/bb/file"), received)
    assert 0 < len(received) < len(data)
    assert stored_files(hot.root) == []
    assert (tiers.stats.fills, tiers.stats.abandoned_fills, tiers.stats.bytes) == (0, 1, 0)
    faulty.heal()
    assert await read(tiers, "aa/bb/file") == data
    assert await read(tiers, "aa/bb/file") == data
    assert (tiers.stats.fills, tiers.stats.hits) == (1, 1)


@pytest.mark.parametrize("how", ["closed", "cancelled"])
async def test_a_reader_that_goes_away_midway_leaves_nothing_in_the_hot_tier(
    hot: LocalStorage, cold: CountingStorage, how: str
) -> None:
    tiers = TieredStorage(hot, cold, max_bytes=10_000 * KB)
    data = os.urandom(500 * KB)
    await tiers.put("aa/bb/file", chunked(data))
    stream = await tiers.get("aa/bb/file")
    if how == "closed":
        await anext(stream)
        await stream.aclose()  # type: ignore[attr-defined]
    else:
        with anyio.move_on_after(0) as scope:
            await anext(stream)
            await anyio.sleep_forever()
        assert scope.cancelled_caught
        await stream.aclose()  # type: ignore[attr-defined]
    await anyio.sleep(0.05)
    assert stored_files(hot.root) == []
    assert tiers.stats.bytes == 0
    assert await read(tiers, "aa/bb/file") == data  # the next reader fills it


async def test_a_reader_that_stops_at_the_last_byte_leaves_the_object_in_the_hot_tier(
    hot: LocalStorage, cold: CountingStorage
) -> None:
    """A server stops reading once it has sent Content-Length bytes, without asking the
    stream for more: the fill is complete by then."""
    tiers = TieredStorage(hot, cold, max_bytes=10_000 * KB)
    data = os.urandom(300 * KB)
    await tiers.put("aa/bb/file", chunked(data))
    stream = await tiers.get("aa/bb/file", start=0, end=len(data))
    received = bytearray()
    while len(received) < len(data):
        received += await anext(stream)
    await stream.aclose()  # type: ignore[attr-defined]
    assert received == data
    assert stored_files(hot.root) == ["aa/bb/file"]
    gets = cold.gets
    assert await read(tiers, "aa/bb/file", 0, len(data)) == data
    assert (cold.gets, tiers.stats.hits) == (gets, 1)


async def test_a_stream_dropped_before_its_first_chunk_frees_the_fill(
    hot: LocalStorage, cold: CountingStorage
) -> None:
    tiers = TieredStorage(hot, cold, max_bytes=10_000 * KB)
    await tiers.put("aa/bb/file", chunked(b"bytes"))
    stream = await tiers.get("aa/bb/file")
    del stream
    with anyio.fail_after(5):
        assert await read(tiers, "aa/bb/file") == b"bytes"


async def test_concurrent_readers_of_a_missing_object_read_the_cold_tier_once(
    hot: LocalStorage, cold: CountingStorage
) -> None:
    tiers = TieredStorage(hot, cold, max_bytes=10_000 * KB)
    data = os.urandom(2000 * KB)
    await tiers.put("aa/bb/file", chunked(data))
    results: list[bytes] = []

    async def reader() -> None:
        results.append(await read(tiers, "aa/bb/file"))

    async with anyio.create_task_group() as group:
        for _ in range(4):
            group.start_soon(reader)
    assert results == [data] * 4
    assert cold.gets == 1
    assert (tiers.stats.fills, tiers.stats.misses, tiers.stats.hits) == (1, 1, 3)


async def test_ranges_come_from_the_hot_tier_once_it_holds_the_object(
    hot: LocalStorage, cold: CountingStorage
) -> None:
    tiers = TieredStorage(hot, cold, max_bytes=10_000 * KB)
    data = os.urandom(300 * KB)
    await tiers.put("aa/bb/file", chunked(data))
    assert await read(tiers, "aa/bb/file", 10, 20) == data[10:20]  # a miss: no fill
    assert await read(tiers, "aa/bb/file", 0, 20) == data[:20]
    assert stored_files(hot.root) == []
    assert await read(tiers, "aa/bb/file", 0, len(data)) == data  # the whole object: a fill
    assert stored_files(hot.root) == ["aa/bb/file"]
    gets = cold.gets
    assert await read(tiers, "aa/bb/file", 5, 100 * KB) == data[5 : 100 * KB]
    assert await read(tiers, "aa/bb/file", len(data) - 1) == data[-1:]
    assert await tiers.head("aa/bb/file") == len(data)
    assert cold.gets == gets


async def test_put_and_delete_drop_the_hot_copy(hot: LocalStorage, cold: CountingStorage) -> None:
    tiers = TieredStorage(hot, cold, max_bytes=10_000 * KB)
    await tiers.put("aa/bb/file", chunked(b"first"))
    assert await read(tiers, "aa/bb/file") == b"first"
    await tiers.put("aa/bb/file", chunked(b"second"))
    assert await read(tiers, "aa/bb/file") == b"second"
    await tiers.delete("aa/bb/file")
    assert stored_files(hot.root) == stored_files(cold.root) == []
    assert tiers.stats.bytes == 0


async def test_a_failing_hot_tier_still_serves_every_read(cold: CountingStorage) -> None:
    hot = FaultyStorage(MemoryStorage())
    hot.fail_put = True
    tiers = TieredStorage(hot, cold, max_bytes=10_000 * KB)
    data = os.urandom(100 * KB)
    await tiers.put("aa/bb/file", chunked(data))
    assert await read(tiers, "aa/bb/file") == data
    assert await read(tiers, "aa/bb/file") == data
    assert (tiers.stats.fills, tiers.stats.abandoned_fills, cold.gets) == (0, 2, 2)


async def test_a_hot_tier_kept_across_restarts_is_taken_stock_of_and_bounded(
    hot: LocalStorage, cold: CountingStorage
) -> None:
    first = TieredStorage(hot, cold, max_bytes=1000 * KB)
    for n in range(4):
        await first.put(f"aa/bb/f{n}", chunked(os.urandom(100 * KB)))
        await read(first, f"aa/bb/f{n}")
    assert len(stored_files(hot.root)) == 4
    second = TieredStorage(hot, cold, max_bytes=250 * KB)
    await second.head("aa/bb/f0")
    assert await second.head("aa/bb/f0") == 100 * KB
    gets = cold.gets
    kept = stored_files(hot.root)
    assert len(kept) == 2
    assert second.stats.bytes == hot_bytes(hot) == 200 * KB
    await read(second, kept[0])
    assert (cold.gets, second.stats.hits) == (gets, 1)
