"""`WorkerThreads.run_to_end` when its caller is cancelled: the caller waits for the job to end,
is cancelled, and what the job returned goes to ``undo``; uncancelled, the caller gets it."""

from __future__ import annotations

import asyncio
import functools
import gc
import threading
import time
import warnings
from pathlib import Path

import anyio
import pytest

from openai_files import LocalStorage
from openai_files._worker_threads import WorkerThreads

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def _none() -> None:
    return None


def _square(n: int, _: None) -> int:
    return n * n


async def test_a_caller_cancelled_by_a_scope_waits_and_hands_the_result_to_undo() -> None:
    threads = WorkerThreads[None](1, "test-undo", make=_none)
    undone: list[str] = []
    done = threading.Event()

    def slow(_: None) -> str:
        time.sleep(0.2)
        done.set()
        return "opened"

    reached_after = False
    with anyio.move_on_after(0.01) as scope:
        await threads.run_to_end(slow, undo=undone.append)
        reached_after = True
    assert scope.cancelled_caught
    assert not reached_after
    assert done.is_set()  # the caller waited for the job's end
    assert undone == ["opened"]
    await threads.aclose()


async def test_a_natively_cancelled_task_waits_for_the_job_then_is_cancelled() -> None:
    threads = WorkerThreads[None](1, "test-undo-native", make=_none)
    undone: list[int] = []
    done = threading.Event()

    def slow(_: None) -> int:
        time.sleep(0.2)
        done.set()
        return 7

    task = asyncio.ensure_future(threads.run_to_end(slow, undo=undone.append))
    await asyncio.sleep(0.02)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert done.is_set()
    assert undone == [7]
    await threads.aclose()


async def test_a_job_that_fails_under_a_cancelled_caller_is_not_undone() -> None:
    threads = WorkerThreads[None](1, "test-undo-failed", make=_none)
    undone: list[object] = []

    def failing(_: None) -> object:
        time.sleep(0.1)
        raise OSError("disk gone")

    with anyio.move_on_after(0.01) as scope:
        await threads.run_to_end(failing, undo=undone.append)
    assert scope.cancelled_caught
    assert undone == []
    await threads.aclose()


async def test_an_uncancelled_caller_gets_the_result_and_nothing_is_undone() -> None:
    threads = WorkerThreads[None](2, "test-undo-plain", make=_none)
    undone: list[int] = []
    results = await asyncio.gather(
        *(threads.run_to_end(functools.partial(_square, n), undo=undone.append) for n in range(20))
    )
    assert results == [n * n for n in range(20)]
    assert undone == []
    await threads.aclose()


async def test_a_read_cancelled_while_its_file_opens_closes_the_file(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path / "store")
    await storage.put("aa/bb", _once(b"x" * (3 * 1024 * 1024)))
    before = _open_files(tmp_path)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for _ in range(30):
            with anyio.move_on_after(0):  # cancelled at its first wait: the opener's hand-off
                await storage.get("aa/bb")
            with anyio.move_on_after(0):
                await storage.get_mapped(
                    "aa/bb", lambda _, view: len(view), start=0, end=3 << 20, block_size=1 << 20
                )
        await asyncio.sleep(0.05)
        gc.collect()
    assert _open_files(tmp_path) == before
    assert not [w for w in caught if issubclass(w.category, ResourceWarning)]  # closed, not lost
    await storage.aclose()


async def _once(data: bytes):  # type: ignore[no-untyped-def]
    yield data


def _open_files(under: Path) -> int:
    count = 0
    for fd in Path("/proc/self/fd").iterdir():
        try:
            if str(under) in str(fd.readlink()):
                count += 1
        except OSError:
            pass
    return count
