"""Durable appends (Uploads API parts) start writing each block to the device as soon as it
is written (Linux ``sync_file_range``), so that the flush before a part's answer waits for its
last blocks only; a put leaves that to its flushes. The calls are observed by recording libc's
``sync_file_range`` (still carried out) and ``os.fsync``; the bytes stored are checked as they
are."""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import AsyncIterator

import pytest

from openai_files.storage import _local_files
from openai_files.storage.local import LocalStorage

MiB = 1024 * 1024

pytestmark = pytest.mark.skipif(
    not _local_files.can_start_writeback(), reason="needs Linux's sync_file_range"
)


class Calls:
    """``("writeback", path, start)`` and ``("fsync", path, 0)``, from every thread, in order."""

    def __init__(self) -> None:
        self.events: list[tuple[str, str, int]] = []
        self._lock = threading.Lock()

    def add(self, kind: str, descriptor: int, start: int = 0) -> None:
        with self._lock:
            self.events.append((kind, os.readlink(f"/proc/self/fd/{descriptor}"), start))

    def starts(self, name: str) -> list[int]:
        return [start for kind, path, start in self.events if kind == "writeback" and name in path]


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> Calls:
    calls = Calls()
    real = _local_files._sync_file_range
    assert real is not None
    real_fsync = os.fsync

    def sync_file_range(descriptor: int, start: int, length: int, flags: int) -> int:
        assert (length, flags) == (0, 2)  # to the end of the file, start writing, no wait
        calls.add("writeback", descriptor, start)
        return real(descriptor, start, length, flags)

    def fsync(descriptor: int) -> None:
        calls.add("fsync", descriptor)
        real_fsync(descriptor)

    monkeypatch.setattr(_local_files, "_sync_file_range", sync_file_range)
    monkeypatch.setattr(os, "fsync", fsync)
    return calls


def _blocks(count: int, seed: int = 0) -> list[bytes]:
    return [bytes([(seed + n) % 251]) * MiB for n in range(count)]


async def _stream(blocks: list[bytes]) -> AsyncIterator[bytes]:
    for block in blocks:
        for offset in range(0, len(block), 64 * 1024):  # network-sized chunks
            yield block[offset : offset + 64 * 1024]


@pytest.mark.anyio
async def test_a_put_leaves_the_writeback_to_its_flushes(
    tmp_path: os.PathLike[str], calls: Calls
) -> None:
    storage = LocalStorage(tmp_path, block_size=MiB)
    blocks = _blocks(4)
    blob = await storage.put("ab/large", _stream(blocks))
    assert blob.size == 4 * MiB
    assert storage.path_for("ab/large").read_bytes() == b"".join(blocks)
    assert calls.starts(".part") == []
    assert any(kind == "fsync" for kind, _, _ in calls.events)


@pytest.mark.anyio
async def test_appends_start_the_writeback_from_where_each_part_begins(
    tmp_path: os.PathLike[str], calls: Calls
) -> None:
    storage = LocalStorage(tmp_path, block_size=MiB)
    first, second = _blocks(2), _blocks(3, seed=7)
    assert await storage.append("up/appended", _stream(first), offset=0) is not None
    assert await storage.append("up/appended", _stream(second), offset=2 * MiB) is not None
    name = storage.unfinished_path("up/appended").name
    assert calls.starts(name) == [0, MiB, 2 * MiB, 3 * MiB, 4 * MiB]
    writebacks = [n for n, event in enumerate(calls.events) if event[0] == "writeback"]
    flushes = [n for n, (kind, path, _) in enumerate(calls.events) if kind == "fsync"]
    # Each part's flush (before it answers) comes after the writeback of its every block.
    assert writebacks[1] < flushes[0] < writebacks[2]
    assert writebacks[-1] < flushes[-1]
    await storage.seal("up/appended", "ab/sealed", size=5 * MiB)
    assert storage.path_for("ab/sealed").read_bytes() == b"".join(first + second)


@pytest.mark.anyio
async def test_without_fsync_no_writeback_is_started(
    tmp_path: os.PathLike[str], calls: Calls
) -> None:
    storage = LocalStorage(tmp_path, block_size=MiB, fsync=False)
    await storage.put("ab/large", _stream(_blocks(3)))
    assert await storage.append("up/appended", _stream(_blocks(2)), offset=0) is not None
    assert calls.events == []


@pytest.mark.anyio
async def test_a_refused_writeback_is_only_a_hint_the_flush_still_makes_the_put_durable(
    tmp_path: os.PathLike[str], monkeypatch: pytest.MonkeyPatch, calls: Calls
) -> None:
    def refused(descriptor: int, start: int, length: int, flags: int) -> int:
        calls.add("writeback", descriptor, start)
        return -1  # as libc answers with errno set, e.g. for a file that cannot take it

    monkeypatch.setattr(_local_files, "_sync_file_range", refused)
    storage = LocalStorage(tmp_path, block_size=MiB)
    blocks = _blocks(3)
    blob = await storage.append("up/appended", _stream(blocks), offset=0)
    assert blob is not None
    assert blob.size == 3 * MiB
    await storage.seal("up/appended", "ab/sealed", size=3 * MiB)
    assert storage.path_for("ab/sealed").read_bytes() == b"".join(blocks)
    assert [kind for kind, _, _ in calls.events].count("writeback") == 3
    assert any(kind == "fsync" for kind, _, _ in calls.events)


def test_writeback_is_offered_on_linux() -> None:
    assert _local_files.can_start_writeback() == sys.platform.startswith("linux")
