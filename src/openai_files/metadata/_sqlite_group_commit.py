"""Group commit for the SQLite store's writes: the writes that wait for the writer thread
while it is busy are run together, in one transaction with one flush of the write-ahead log.

Each write is a body (``_sql_runners``) that would otherwise be one transaction of its own.
A group is run in order, each body inside a ``SAVEPOINT`` of one ``BEGIN IMMEDIATE``
transaction, and committed once; every caller is answered only after that commit, so a write
that returns is as durable as before. What each write keeps:

- its own outcome: a body that raises `Rollback`, a library error (`OpenAIFilesError`: a
  quota refused, a conflict) or an `IntegrityError` (an idempotency key taken) has its
  savepoint rolled back, and only its caller sees the result or the error; the others commit;
- its atomicity and isolation: a body sees the rows the bodies before it in the group wrote,
  exactly as if the writes had run one after another, which they do (a conditional update
  that decides a quota or a delete sees every earlier write of the group);
- its failure alone: any other error (the database's, not a refusal) rolls the whole group
  back, and every body is then run again alone, in a transaction of its own, as it would have
  been without the group; so does a failed commit. A body is a function of its connection, so
  running it again on the rolled-back database is running it for the first time.

Writes queue while the thread waits for the disk, and the next group takes them all, up to
`GROUP_MOST`. A write that the thread finds alone waits for company only while writes are
coming fast: if the thread's last commit ended less than `BUSY_WITHIN` before, it sleeps
`COMMIT_DELAY` first (as PostgreSQL's ``commit_delay``), so that the writes of concurrent
requests, a fraction of a millisecond behind, share its commit and its flush instead of each
paying for one; otherwise (a quiet store, one client) it runs at once, alone, without
savepoints.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any, Generic, TypeVar

from sqlalchemy import Connection, Engine
from sqlalchemy.exc import IntegrityError

from ..errors import OpenAIFilesError
from ._sqlite_threads import ConnectionThreads

__all__ = ["GROUP_MOST", "GroupCommits", "Rollback"]

T = TypeVar("T")
Body = Callable[[Connection], T]

GROUP_MOST = 64
"""Writes committed together at most."""
COMMIT_DELAY = 0.0002
"""Seconds a write found alone waits for others to share its commit, while writes are
coming fast. Measured with 8 clients uploading 1 KB files to ``serve`` on local disk (small
files kept in SQLite), 0.2 ms took the server's CPU per upload from 0.73 to 0.53 ms and its
rate from 1,250 to 1,780 a second; 0.5 and 1 ms did no better."""
BUSY_WITHIN = 0.0002
"""Writes are coming fast when the thread's last commit ended less than this many seconds
before the next write is taken: under 8 clients the thread is never idle that long, while one
client's writes, a round trip apart, never wait (its uploads took 0.93 ms at the median, as
without the delay)."""

_SAVEPOINT = "openai_files_write"


class Rollback(Exception, Generic[T]):
    """Raised by a write's body to undo its transaction quietly; the runner returns
    ``result``."""

    def __init__(self, result: T) -> None:
        super().__init__(result)
        self.result = result


_REFUSALS = (OpenAIFilesError, IntegrityError)
"""Errors a body raises to refuse its write: undone by its savepoint, the group goes on."""


class _Write(Generic[T]):
    """One write waiting for the writer thread, and its outcome once the thread has run it."""

    __slots__ = ("body", "done", "error", "result")

    def __init__(self, body: Body[T]) -> None:
        self.body = body
        self.done = False
        self.result: T | None = None
        self.error: BaseException | None = None

    def settle(self, result: Any = None, error: BaseException | None = None) -> None:
        self.result, self.error, self.done = result, error, True

    def outcome(self) -> T:
        if self.error is not None:
            raise self.error
        return self.result  # type: ignore[return-value]


class GroupCommits:
    """Writes on one thread with its connection of ``engine``, committed in groups (see the
    module)."""

    def __init__(self, engine: Engine, name: str) -> None:
        self._thread = ConnectionThreads(engine, 1, name)
        self._waiting: deque[_Write[Any]] = deque()
        self._lock = threading.Lock()
        self._last_commit = -BUSY_WITHIN  # by `time.monotonic`, in the writer thread

    async def write(self, body: Body[T]) -> T:
        """Run ``body`` in a transaction (shared with the writes queued beside it), committed
        unless it raises. A cancelled caller waits for the write to end, then is cancelled
        (as `WorkerThreads.run_to_end`): it cannot tell whether the write took effect."""
        write = _Write(body)
        with self._lock:
            self._waiting.append(write)
        try:
            # The thread runs the writes in the order they came: by the time this call's own
            # turn has ended, a group has run this write (this turn's, or an earlier one's).
            await self._thread.run_to_end(self._run_waiting)
        except BaseException as exc:
            with self._lock:
                if not write.done and write in self._waiting:
                    # The turn failed before it took anything (no connection): not run.
                    self._waiting.remove(write)
                    raise
            if not write.done or isinstance(exc, asyncio.CancelledError):
                raise  # cancelled: only once the write has ended, whatever its outcome
        return write.outcome()

    async def aclose(self) -> None:
        await self._thread.aclose()

    def _run_waiting(self, connection: Connection) -> None:
        """In the writer thread: the writes waiting, run as one group (a write alone first
        waits `COMMIT_DELAY` for others while writes are coming fast)."""
        with self._lock:
            alone = len(self._waiting) == 1
        if alone and time.monotonic() - self._last_commit < BUSY_WITHIN:
            time.sleep(COMMIT_DELAY)
        with self._lock:
            group = [self._waiting.popleft() for _ in range(min(len(self._waiting), GROUP_MOST))]
        if not group:
            return  # taken by an earlier group
        try:
            if len(group) == 1:
                _alone(connection, group[0])
            elif group:
                _together(connection, group)
        except BaseException as exc:
            for write in group:
                if not write.done:
                    write.settle(error=exc)
            raise
        finally:
            self._last_commit = time.monotonic()


def _alone(connection: Connection, write: _Write[Any]) -> None:
    """One write, in a transaction of its own."""
    try:
        write.settle(write_immediate(write.body, connection))
    except Exception as exc:
        write.settle(error=exc)


def _together(connection: Connection, group: list[_Write[Any]]) -> None:
    """The writes of ``group`` in one transaction, each in a savepoint; if anything but a
    refusal fails, each alone instead."""
    driver = connection.connection.dbapi_connection
    assert driver is not None
    outcomes: list[tuple[Any, BaseException | None]] = []
    try:
        connection.exec_driver_sql("BEGIN IMMEDIATE")
        for write in group:
            driver.execute(f"SAVEPOINT {_SAVEPOINT}")
            try:
                result = write.body(connection)
            except Rollback as undo:
                _undo(driver)
                outcomes.append((undo.result, None))
            except _REFUSALS as refused:
                _undo(driver)
                outcomes.append((None, refused))
            else:
                driver.execute(f"RELEASE {_SAVEPOINT}")
                outcomes.append((result, None))
        connection.commit()
    except Exception:
        end_transaction(connection)
        for write in group:
            _alone(connection, write)
        return
    finally:
        end_transaction(connection)
    for write, (result, error) in zip(group, outcomes, strict=True):
        write.settle(result, error)


def _undo(driver: Any) -> None:
    driver.execute(f"ROLLBACK TO {_SAVEPOINT}")
    driver.execute(f"RELEASE {_SAVEPOINT}")


def in_transaction(connection: Connection, body: Body[T]) -> T:
    """``body`` in the transaction open on ``connection``: committed unless it raises,
    rolled back if it does (`Rollback`: quietly, its result returned)."""
    try:
        result = body(connection)
    except Rollback as undo:
        connection.rollback()
        return undo.result  # type: ignore[no-any-return]
    except BaseException:
        connection.rollback()
        raise
    connection.commit()
    return result


def write_immediate(body: Body[T], connection: Connection) -> T:
    """``body`` in a transaction begun with ``BEGIN IMMEDIATE`` (the write lock taken first,
    so it never waits in SQLite's busy handler for another writer of this process)."""
    try:
        connection.exec_driver_sql("BEGIN IMMEDIATE")
        return in_transaction(connection, body)
    finally:
        end_transaction(connection)  # after a failed BEGIN or COMMIT


def end_transaction(connection: Connection) -> None:
    """Roll back what is still open on the connection, in SQLAlchemy or in the driver: the
    connection is kept for the thread's next job (a transaction whose commit failed is no
    longer active, but must be rolled back before the connection runs anything else)."""
    if connection.get_transaction() is not None:
        connection.rollback()
    driver = connection.connection.dbapi_connection
    if driver is not None and driver.in_transaction:
        driver.rollback()
