"""`MappedReads`: memory and local disk read a range in blocks, each mapped by a function in the
thread that read it, a bounded number ahead of the consumer; `EncryptedStorage` opens its
segments that way, and every tampering is still an error (on that path and on `get`'s, for a
storage without the capability), with only genuine bytes before it."""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import TypeVar

import anyio
import pytest

from openai_files import BlobNotFound, BlobUnreadable, LocalStorage, MemoryStorage
from openai_files.storage._mapped_reads import READ_AHEAD
from openai_files.storage.base import MappedReads, Storage
from openai_files.storage.encrypted import EncryptedStorage, Keyring, MasterKey

pytestmark = pytest.mark.anyio

T = TypeVar("T")
MiB = 1024 * 1024
KEY = MasterKey("key-1", os.urandom(32))


class GetOnly(MemoryStorage):
    """`MemoryStorage` without `MappedReads`: `EncryptedStorage` reads it through `get`."""

    get_mapped = None  # type: ignore[assignment]  # a protocol's method set to None is not offered


async def chunked(data: bytes, size: int = 100_000) -> AsyncIterator[bytes]:
    for offset in range(0, len(data), size):
        yield data[offset : offset + size]


async def drain(stream: AsyncIterator[T], into: list[T]) -> None:
    async for item in stream:
        into.append(item)


async def read_all(storage: Storage, key: str) -> bytes:
    return b"".join([chunk async for chunk in await storage.get(key)])


def open_descriptors() -> int:
    return len(os.listdir("/proc/self/fd"))


@pytest.fixture(params=["memory", "local"])
async def mapped(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[MappedReads]:
    storage: MemoryStorage | LocalStorage
    storage = MemoryStorage() if request.param == "memory" else LocalStorage(tmp_path, fsync=False)
    yield storage
    await storage.aclose()


def spans(offset: int, block: memoryview) -> tuple[int, bytes, str]:
    return offset, bytes(block), threading.current_thread().name


# -- the capability --------------------------------------------------------------------------


async def test_memory_and_local_disk_offer_it(tmp_path: Path) -> None:
    assert isinstance(MemoryStorage(), MappedReads)
    assert isinstance(LocalStorage(tmp_path), MappedReads)
    assert not isinstance(GetOnly(), MappedReads)


@pytest.mark.parametrize(
    ("start", "end", "block"),
    [(0, 1000, 300), (0, 900, 300), (7, 1000, 300), (0, 5000, 300), (999, 1000, 1), (0, 10, 64)],
)
async def test_blocks_cover_the_range_in_order_and_stop_at_the_end(
    mapped: MappedReads, start: int, end: int, block: int
) -> None:
    data = os.urandom(1000)
    assert isinstance(mapped, Storage)
    await mapped.put("aa/bb/object", chunked(data, 77))
    stream = await mapped.get_mapped("aa/bb/object", spans, start=start, end=end, block_size=block)
    results = [result async for result in stream]
    stop = min(end, len(data))
    assert [offset for offset, _, _ in results] == list(range(start, stop, block))
    assert b"".join(piece for _, piece, _ in results) == data[start:stop]
    assert all(name != threading.current_thread().name for _, _, name in results)


async def test_an_empty_range_maps_nothing_and_a_missing_key_is_not_found(
    mapped: MappedReads,
) -> None:
    assert isinstance(mapped, Storage)
    await mapped.put("aa/bb/object", chunked(b"abc"))
    for start, end in [(3, 10), (2, 2), (50, 60)]:
        stream = await mapped.get_mapped("aa/bb/object", spans, start=start, end=end, block_size=2)
        assert [result async for result in stream] == []
    with pytest.raises(BlobNotFound):
        await mapped.get_mapped("aa/bb/missing", spans, start=0, end=10, block_size=2)
    with pytest.raises(BlobNotFound):
        await mapped.get_mapped("aa/bb/missing", spans, start=0, end=0, block_size=2)


async def test_the_functions_error_is_raised_at_its_place(mapped: MappedReads) -> None:
    assert isinstance(mapped, Storage)
    await mapped.put("aa/bb/object", chunked(os.urandom(10 * 1000)))
    descriptors = open_descriptors()

    def failing(offset: int, block: memoryview) -> int:
        if offset == 4000:
            raise ValueError("bad block")
        return offset

    stream = await mapped.get_mapped("aa/bb/object", failing, start=0, end=10_000, block_size=1000)
    got: list[int] = []
    with pytest.raises(ValueError, match="bad block"):
        await drain(stream, got)
    assert got == [0, 1000, 2000, 3000]
    assert open_descriptors() == descriptors


async def test_it_reads_a_bounded_number_of_blocks_ahead(mapped: MappedReads) -> None:
    assert isinstance(mapped, Storage)
    await mapped.put("aa/bb/object", chunked(os.urandom(20 * 1000)))
    called: list[int] = []

    def counted(offset: int, block: memoryview) -> int:
        called.append(offset)
        return offset

    stream = await mapped.get_mapped("aa/bb/object", counted, start=0, end=20_000, block_size=1000)
    assert await anext(stream) == 0
    await anyio.sleep(0.2)  # time to read ahead as far as it would
    assert len(called) == 1 + READ_AHEAD
    assert [offset async for offset in stream] == list(range(1000, 20_000, 1000))
    assert len(called) == 20


async def test_closing_or_cancelling_early_waits_for_the_jobs_and_closes_the_file(
    mapped: MappedReads,
) -> None:
    assert isinstance(mapped, Storage)
    await mapped.put("aa/bb/object", chunked(os.urandom(50 * 1000)))
    descriptors = open_descriptors()
    finished: list[int] = []

    def slow(offset: int, block: memoryview) -> int:
        threading.Event().wait(0.05)
        finished.append(offset)
        return offset

    stream = await mapped.get_mapped("aa/bb/object", slow, start=0, end=50_000, block_size=1000)
    assert await anext(stream) == 0
    await stream.aclose()  # type: ignore[attr-defined]  # an async generator
    calls = len(finished)
    assert calls <= 1 + READ_AHEAD
    await anyio.sleep(0.2)
    assert len(finished) == calls  # nothing ran on after the close returned
    assert open_descriptors() == descriptors

    gate = threading.Event()
    started: list[int] = []
    ended: list[int] = []

    def gated(offset: int, block: memoryview) -> int:
        started.append(offset)
        if offset:
            gate.wait()
        ended.append(offset)
        return offset

    stream = await mapped.get_mapped("aa/bb/object", gated, start=0, end=50_000, block_size=1000)
    assert await anext(stream) == 0
    task = asyncio.ensure_future(anext(stream))
    await asyncio.sleep(0.05)
    assert not task.done()  # waiting for a thread that maps a block
    threading.Timer(0.1, gate.set).start()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert gate.is_set()  # the cancelled read waited for the jobs under way
    assert sorted(ended) == sorted(started)
    assert len(started) <= 1 + READ_AHEAD
    assert open_descriptors() == descriptors


# -- EncryptedStorage on it ------------------------------------------------------------------


def inner_storage(kind: str, root: Path) -> Storage:
    if kind == "local":
        return LocalStorage(root, fsync=False)
    return MemoryStorage() if kind == "memory" else GetOnly()


async def stored(inner: Storage, key: str) -> bytearray:
    return bytearray(b"".join([chunk async for chunk in await inner.get(key)]))


async def replace(inner: Storage, key: str, data: bytes | bytearray) -> None:
    await inner.put(key, chunked(bytes(data)))


def swapped(content: bytearray, sealed: int) -> bytearray:
    first, second = content[sealed : 2 * sealed], content[2 * sealed : 3 * sealed]
    content[sealed : 2 * sealed], content[2 * sealed : 3 * sealed] = second, first
    return content


def flipped(where: int) -> Callable[[bytearray, int], bytearray]:
    def flip(content: bytearray, sealed: int) -> bytearray:
        content[where] ^= 0x01
        return content

    return flip


TAMPERS: dict[str, tuple[Callable[[bytearray, int], bytearray], int]] = {
    # What is done to the stored content, and the segment it spoils (-1: the last).
    "first byte flipped": (flipped(0), 0),
    "a byte of the second segment flipped": (lambda c, sealed: flipped(sealed + 5)(c, sealed), 1),
    "last byte flipped": (flipped(-1), -1),
    "cut by a byte": (lambda content, sealed: content[:-1], -1),
    "cut by the last segment": (lambda c, sealed: c[: -(len(c) % sealed or sealed)], -1),
    "cut to two segments": (lambda content, sealed: content[: 2 * sealed], 2),
    "two segments swapped": (swapped, 1),
}


@pytest.mark.parametrize("segment_size", [MiB - 16, 4096])
@pytest.mark.parametrize("kind", ["memory", "local", "get only"])
@pytest.mark.parametrize("tamper", sorted(TAMPERS))
async def test_tampering_is_an_error_with_only_genuine_bytes_before_it(
    tmp_path: Path, kind: str, segment_size: int, tamper: str
) -> None:
    inner = inner_storage(kind, tmp_path)
    storage = EncryptedStorage(inner, Keyring([KEY]), segment_size=segment_size)
    data = os.urandom(5 * segment_size + 100)
    await storage.put("aa/bb/victim", chunked(data))
    sealed = segment_size + 16
    spoil, spoiled = TAMPERS[tamper]
    await replace(inner, "aa/bb/victim", spoil(await stored(inner, "aa/bb/victim"), sealed))
    received: list[bytes] = []
    with pytest.raises(BlobUnreadable):
        await drain(await storage.get("aa/bb/victim"), received)
    assert data.startswith(b"".join(received))
    at = len(data) - 1 if spoiled == -1 else spoiled * segment_size + 3
    with pytest.raises(BlobUnreadable):  # a range of a byte in the spoiled segment
        await drain(await storage.get("aa/bb/victim", start=at, end=at + 1), [])
    await storage.aclose()


@pytest.mark.parametrize("kind", ["memory", "local", "get only"])
async def test_another_objects_segment_or_a_wrong_key_is_an_error(
    tmp_path: Path, kind: str
) -> None:
    inner = inner_storage(kind, tmp_path)
    storage = EncryptedStorage(inner, Keyring([KEY]))
    data = os.urandom(3 * MiB)
    await storage.put("aa/bb/victim", chunked(data))
    await storage.put("aa/bb/other", chunked(os.urandom(3 * MiB)))
    content, other = await stored(inner, "aa/bb/victim"), await stored(inner, "aa/bb/other")
    content[MiB : 2 * MiB] = other[MiB : 2 * MiB]
    await replace(inner, "aa/bb/victim", content)
    received: list[bytes] = []
    with pytest.raises(BlobUnreadable):
        await drain(await storage.get("aa/bb/victim"), received)
    assert data.startswith(b"".join(received))
    impostor = EncryptedStorage(inner, Keyring([MasterKey(KEY.key_id, os.urandom(32))]))
    with pytest.raises(BlobUnreadable):
        await impostor.get("aa/bb/other")
    await storage.aclose()


async def test_a_range_on_local_disk_reads_and_opens_only_its_segments(tmp_path: Path) -> None:
    inner = LocalStorage(tmp_path, fsync=False)
    storage = EncryptedStorage(inner, Keyring([KEY]))
    segment = MiB - 16
    data = os.urandom(12 * segment)
    await storage.put("aa/bb/big", chunked(data))
    opened: list[tuple[int, int]] = []
    original = inner.get_mapped

    async def spying(
        key: str, function: Callable[[int, memoryview], bytes], **kwargs: int
    ) -> AsyncIterator[bytes]:
        def spied(offset: int, block: memoryview) -> bytes:
            opened.append((offset, len(block)))
            return function(offset, block)

        return await original(key, spied, **kwargs)

    inner.get_mapped = spying  # type: ignore[method-assign, assignment]
    start, end = 5 * segment + 10, 7 * segment + 1
    got = b"".join([chunk async for chunk in await storage.get("aa/bb/big", start=start, end=end)])
    assert got == data[start:end]
    assert sorted(opened) == [(5 * MiB, MiB), (6 * MiB, MiB), (7 * MiB, MiB)]
    await storage.aclose()


async def test_an_encrypted_download_on_local_disk_holds_a_bounded_number_of_blocks(
    tmp_path: Path,
) -> None:
    inner = LocalStorage(tmp_path, fsync=False)
    storage = EncryptedStorage(inner, Keyring([KEY]))
    data = os.urandom(16 * (MiB - 16))
    await storage.put("aa/bb/object", chunked(data, MiB))
    descriptors = open_descriptors()
    stream = await storage.get("aa/bb/object")
    assert await anext(stream) == data[: MiB - 16]
    await anyio.sleep(0.2)
    assert open_descriptors() == descriptors + 1
    rest = b"".join([chunk async for chunk in stream])
    assert data == data[: MiB - 16] + rest
    assert open_descriptors() == descriptors
    await storage.aclose()


@pytest.mark.parametrize("kind", ["memory", "local"])
async def test_a_spoiled_first_block_is_an_error_and_logged(
    tmp_path: Path, kind: str, caplog: pytest.LogCaptureFixture
) -> None:
    inner = inner_storage(kind, tmp_path)
    storage = EncryptedStorage(inner, Keyring([KEY]))
    await storage.put("aa/bb/victim", chunked(os.urandom(3 * MiB)))
    content = await stored(inner, "aa/bb/victim")
    content[5] ^= 0x01
    await replace(inner, "aa/bb/victim", content)
    with caplog.at_level("ERROR", logger="openai_files"), pytest.raises(BlobUnreadable):
        await read_all(storage, "aa/bb/victim")
    assert "segment 0 fails its integrity check" in caplog.text
    await storage.aclose()
