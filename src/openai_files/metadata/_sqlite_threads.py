"""Threads that each own one connection of a synchronous engine for as long as they live, and
run jobs on it for an asyncio event loop: the loop puts a job on a queue and awaits a future,
the thread runs the job and hands the result back with ``call_soon_threadsafe``.

Per job that is one hand-off each way and nothing else: no pool checkout and return, no
limiter, no cancel scope (about a third of what ``anyio.to_thread.run_sync`` costs the process
with the pool checkout it needed). A connection is opened by its thread at its first job and
closed by it at `ConnectionThreads.aclose`.

A caller of `ConnectionThreads.run` that is cancelled stops waiting at once, and a job still
queued is then skipped; `ConnectionThreads.run_to_end` waits for the job to end even when its
caller is cancelled (a write, whose outcome the caller must know before it goes on).
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import weakref
from collections.abc import Callable
from queue import SimpleQueue
from typing import Any, TypeVar

import anyio
from sqlalchemy import Connection, Engine

__all__ = ["ConnectionThreads", "Job"]

T = TypeVar("T")
Job = Callable[[Connection], T]

_Queued = tuple[Job[Any], "asyncio.Future[Any] | None", asyncio.AbstractEventLoop | None]
"""A job, the future of its caller and the caller's loop (no caller: a store let go, `_abandon`)."""


class ConnectionThreads:
    """``count`` threads, each with a connection of ``engine``, taking jobs from one queue."""

    def __init__(self, engine: Engine, count: int, name: str) -> None:
        self._engine = engine
        self._count = count
        self._name = name
        self._jobs: SimpleQueue[_Queued] = SimpleQueue()
        self._threads: list[threading.Thread] = []
        self._start_lock = threading.Lock()
        # A store dropped without `aclose` ends its threads when it is collected.
        weakref.finalize(self, _abandon, self._jobs, self._threads)

    async def run(self, job: Job[T]) -> T:
        """``job`` run on one thread's connection; a cancelled caller stops waiting."""
        return await self._submit(job)

    async def run_to_end(self, job: Job[T]) -> T:
        """``job`` run on one thread's connection; a cancelled caller waits for it to end."""
        future = self._submit(job)
        with anyio.CancelScope(shield=True):
            result = await future
        return result

    async def aclose(self) -> None:
        """Let the queued jobs run, then close every connection and end the threads."""
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

    def _submit(self, job: Job[T]) -> asyncio.Future[T]:
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
                    args=(self._engine, self._jobs),
                    name=f"{self._name}-{index}",
                    daemon=True,
                )
                thread.start()
                self._threads.append(thread)


def _stop(_connection: Connection) -> None:
    """The last job of a thread: it closes its connection and ends (see `_serve`)."""


def _serve(engine: Engine, jobs: SimpleQueue[_Queued]) -> None:
    """One thread's life: its connection opened at the first job, jobs run until `_stop`."""
    connection: Connection | None = None
    while True:
        job, future, loop = jobs.get()
        if job is _stop:
            if connection is not None:
                connection.close()
            _answer(loop, future, None, None)
            return
        if future is not None and not future.cancelled():  # else its caller stopped waiting
            connection = _run(engine, connection, job, future, loop)
        # Waiting for the next job, the thread holds nothing of this one (nor its store).
        del job, future, loop


def _run(
    engine: Engine,
    connection: Connection | None,
    job: Job[Any],
    future: asyncio.Future[Any],
    loop: asyncio.AbstractEventLoop | None,
) -> Connection | None:
    """Run ``job`` and answer its caller; the connection for the next job."""
    try:
        if connection is None:
            connection = engine.connect()
        result = job(connection)
    except BaseException as exc:  # handed to the caller
        _answer(loop, future, None, exc)
        if connection is not None and connection.invalidated:
            connection.close()
            return None
    else:
        _answer(loop, future, result, None)
    return connection


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
        loop.call_soon_threadsafe(_settle, future, result, error)


def _settle(future: asyncio.Future[Any], result: Any, error: BaseException | None) -> None:
    if future.cancelled():
        return
    if error is None:
        future.set_result(result)
    else:
        future.set_exception(error)
