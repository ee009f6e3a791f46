"""`WorkerThreads`, the hand-off that SQLite's connections and local storage's file opens use:
each thread makes its resource at its first job and keeps it, ends it when closed, and makes a
new one after a job that broke it; a cancelled `run_to_end` caller waits for its job."""

from __future__ import annotations

import itertools
import threading
import time

import anyio
import pytest

from openai_files._worker_threads import WorkerThreads

pytestmark = pytest.mark.anyio


class Resource:
    counter = itertools.count()

    def __init__(self) -> None:
        self.number = next(self.counter)
        self.ended = False
        self.broken = False


def end(resource: Resource) -> None:
    resource.ended = True


def current_thread_name(_resource: Resource) -> str:
    return threading.current_thread().name


async def test_a_thread_keeps_its_resource_and_ends_it_when_closed() -> None:
    made: list[Resource] = []

    def make() -> Resource:
        made.append(Resource())
        return made[-1]

    threads = WorkerThreads(1, "test-keeper", make=make, end=end)
    first = await threads.run(lambda resource: resource)
    assert await threads.run(lambda resource: resource) is first
    assert await threads.run(current_thread_name) == "test-keeper-1"
    await threads.aclose()
    assert [resource.ended for resource in made] == [True]
    assert not [t for t in threading.enumerate() if t.name.startswith("test-keeper")]


async def test_a_job_that_breaks_its_resource_has_it_ended_and_replaced() -> None:
    threads = WorkerThreads(1, "test-breaker", make=Resource, end=end, broken=lambda r: r.broken)
    first = await threads.run(lambda resource: resource)

    def fail(resource: Resource) -> None:
        resource.broken = True
        raise ValueError("broken")

    with pytest.raises(ValueError, match="broken"):
        await threads.run(fail)
    second = await threads.run(lambda resource: resource)
    assert first.ended
    assert second is not first
    assert not second.ended
    await threads.aclose()


async def test_a_cancelled_run_to_end_waits_for_its_job() -> None:
    threads = WorkerThreads(1, "test-waiter", make=Resource)
    finished: list[bool] = []

    def slow(_resource: Resource) -> None:
        time.sleep(0.2)
        finished.append(True)

    with anyio.move_on_after(0.01):
        await threads.run_to_end(slow)
    assert finished == [True]
    await threads.aclose()


async def test_threads_closed_start_again_for_the_next_job() -> None:
    threads = WorkerThreads(2, "test-restart", make=Resource)
    await threads.run(current_thread_name)
    await threads.aclose()
    assert await threads.run(current_thread_name) in ("test-restart-1", "test-restart-2")
    await threads.aclose()
