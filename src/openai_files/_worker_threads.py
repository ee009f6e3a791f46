"""Threads that run blocking jobs for an asyncio event loop, each with a resource of its own
(a database connection; nothing, for file I/O) kept for as long as the thread lives: the loop
puts a job on a queue and awaits a future, a thread runs the job with its resource and hands
the result back with ``call_soon_threadsafe``.

Per job that is one hand-off each way and nothing else: no limiter, no cancel scope, no pool
checkout (about half of what ``anyio.to_thread.run_sync`` costs the process). A thread makes
its resource at its first job and ends it at `WorkerThreads.aclose`; a job that fails and
leaves the resource broken has it ended, and the next job makes another.

A caller of `WorkerThreads.run` that is cancelled stops waiting at once, and a job still
queued is then skipped; `WorkerThreads.run_to_end` waits for the job to end even when its
caller is cancelled (a write, or a job that opens something: what it opened is handed to an
``undo`` then).
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import weakref
from collections.abc import Callable
from queue import SimpleQueue
from typing import Any, Generic, TypeVar

import anyio

__all__ = ["WorkerThreads", "settle", "wait_to_end"]

R = TypeVar("R")
T = TypeVar("T")

_Queued = tuple[
    Callable[[Any], Any], "asyncio.Future[Any] | None", asyncio.AbstractEventLoop | None
]
"""A job, the future of its caller and the caller's loop (no caller: threads let go, `_abandon`)."""


class WorkerThreads(Generic[R]):
    """``count`` threads taking jobs from one queue, each with a resource made by ``make``
    at its first job and ended by ``end`` when the thread ends, or after a job that leaves it
    ``broken``."""

    def __init__(
        self,
        count: int,
        name: str,
        *,
        make: Callable[[], R],
        end: Callable[[R], None] = lambda _resource: None,
        broken: Callable[[R], bool] = lambda _resource: False,
    ) -> None:
        self._count = count
        self._name = name
        self._resources = _Resources(make, end, broken)
        self._jobs: SimpleQueue[_Queued] = SimpleQueue()
        self._threads: list[threading.Thread] = []
        self._start_lock = threading.Lock()
        # Threads let go of without `aclose` end when their owner is collected.
        weakref.finalize(self, _abandon, self._jobs, self._threads)

    async def run(self, job: Callable[[R], T]) -> T:
        """``job`` run on one thread with its resource; a cancelled caller stops waiting."""
        return await self._submit(job)

    async def run_to_end(
        self, job: Callable[[R], T], *, undo: Callable[[T], object] | None = None
    ) -> T:
        """``job`` run on one thread with its resource. A cancelled caller waits for the job to
        end, then is cancelled: what the job returned goes to ``undo`` (a file it opened is
        closed) instead of to the caller, which cannot tell whether a write took effect
        (`wait_to_end`)."""
        return await wait_to_end(self._submit(job), undo=undo)

    def submit(self, job: Callable[[R], T]) -> asyncio.Future[T]:
        """The future of ``job``, to be run on one thread with its resource; cancelled before a
        thread takes it, the job is skipped (once running, it runs to its end)."""
        return self._submit(job)

    async def aclose(self) -> None:
        """Let the queued jobs run, then end every resource and every thread."""
        with self._start_lock:
            threads = [*self._threads]
            self._threads.clear()
        loop = asyncio.get_running_loop()
        ended = [loop.create_future() for _ in threads]
        for future in ended:
            self._jobs.put((_stop, future, loop))
        with anyio.CancelScope(shield=True):
            await asyncio.gather(*ended, return_exceptions=True)
        for thread in threads:
            thread.join()  # each has returned from its last job: no wait

    def _submit(self, job: Callable[[R], T]) -> asyncio.Future[T]:
        if not self._threads:
            self._start()
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self._jobs.put((job, future, loop))
        return future

    def _start(self) -> None:
        with self._start_lock:
            while len(self._threads) < self._count:
                index = len(self._threads) + 1
                thread = threading.Thread(
                    target=_serve,
                    args=(self._resources, self._jobs),
                    name=f"{self._name}-{index}",
                    daemon=True,
                )
                thread.start()
                self._threads.append(thread)


async def wait_to_end(future: asyncio.Future[T], *, undo: Callable[[T], object] | None = None) -> T:
    """The outcome of ``future``, which only its own side ends (a job on a thread). A
    cancelled caller waits for it to end, then is cancelled: what it returned goes to
    ``undo`` instead of to the caller.

    ``future`` is shielded with ``asyncio.shield``, the way that costs nothing unless the
    caller is cancelled (no cancel scope): a cancel scope per job measured about 5% of the
    CPU of a small upload."""
    try:
        return await asyncio.shield(future)
    except asyncio.CancelledError:
        with anyio.CancelScope(shield=True):
            await asyncio.wait((future,))
        if undo is not None and not future.cancelled() and future.exception() is None:
            undo(future.result())
        raise


def settle(future: asyncio.Future[Any], result: Any, error: BaseException | None) -> None:
    """On ``future``'s loop: its result, or ``error``; nothing if its caller cancelled it."""
    if future.cancelled():
        return
    if error is None:
        future.set_result(result)
    else:
        future.set_exception(error)


class _Resources(Generic[R]):
    """How the threads make, end and judge their resources."""

    def __init__(
        self, make: Callable[[], R], end: Callable[[R], None], broken: Callable[[R], bool]
    ) -> None:
        self.make = make
        self.end = end
        self.broken = broken


class _NoResource:
    """A thread's resource before its first job, and after one that broke it."""


_NONE = _NoResource()


def _stop(_resource: object) -> None:
    """The last job of a thread: it ends its resource and returns (see `_serve`)."""


def _serve(resources: _Resources[Any], jobs: SimpleQueue[_Queued]) -> None:
    """One thread's life: its resource made at the first job, jobs run until `_stop`."""
    resource: Any = _NONE
    while True:
        job, future, loop = jobs.get()
        if job is _stop:
            if resource is not _NONE:
                resources.end(resource)
            _answer(loop, future, None, None)
            return
        if future is not None and not future.cancelled():  # else its caller stopped waiting
            resource = _run(resources, resource, job, future, loop)
        # Waiting for the next job, the thread holds nothing of this one (nor its owner).
        del job, future, loop


def _run(
    resources: _Resources[Any],
    resource: Any,
    job: Callable[[Any], Any],
    future: asyncio.Future[Any],
    loop: asyncio.AbstractEventLoop | None,
) -> Any:
    """Run ``job`` and answer its caller; the resource for the next job."""
    try:
        if resource is _NONE:
            resource = resources.make()
        result = job(resource)
    except BaseException as exc:  # handed to the caller
        _answer(loop, future, None, exc)
        if resource is not _NONE and resources.broken(resource):
            resources.end(resource)
            return _NONE
    else:
        _answer(loop, future, result, None)
    return resource


def _abandon(jobs: SimpleQueue[_Queued], threads: list[threading.Thread]) -> None:
    for _ in threads:
        jobs.put((_stop, None, None))


def _answer(
    loop: asyncio.AbstractEventLoop | None,
    future: asyncio.Future[Any] | None,
    result: Any,
    error: BaseException | None,
) -> None:
    """Hand the outcome to the caller's loop, unless the caller or its loop is gone."""
    if loop is None or future is None:
        return
    with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits any more
        loop.call_soon_threadsafe(settle, future, result, error)
