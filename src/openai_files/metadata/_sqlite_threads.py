"""Threads that each own one connection of a synchronous engine for as long as they live, and
run jobs on it for an asyncio event loop (`WorkerThreads`: one hand-off each way per job).

A connection is opened by its thread at its first job and closed by it at
`ConnectionThreads.aclose`; a job that leaves it invalidated has it closed, and the next job
opens another. A caller of `ConnectionThreads.run` that is cancelled stops waiting at once, and
a job still queued is then skipped; `ConnectionThreads.run_to_end` waits for the job to end
even when its caller is cancelled (a write, whose outcome the caller must know before it goes
on).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from sqlalchemy import Connection, Engine

from .._worker_threads import WorkerThreads

__all__ = ["ConnectionThreads", "Job"]

T = TypeVar("T")
Job = Callable[[Connection], T]


class ConnectionThreads(WorkerThreads[Connection]):
    """``count`` threads, each with a connection of ``engine``, taking jobs from one queue."""

    def __init__(self, engine: Engine, count: int, name: str) -> None:
        super().__init__(count, name, make=engine.connect, end=_close, broken=_invalidated)


def _close(connection: Connection) -> None:
    connection.close()


def _invalidated(connection: Connection) -> bool:
    return connection.invalidated
