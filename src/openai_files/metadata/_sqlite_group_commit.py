"""Group commit for the SQLite store's writes: the writes that wait for the writer thread
while it is busy are run together, in one transaction with one flush of the write-ahead log.

Each write is a body (``_sql_runners``) that would otherwise be one transaction of its own.
A group is run in order in one ``BEGIN IMMEDIATE`` transaction and committed once; every
caller is answered only after that commit, so a write that returns is as durable as before.
What each write keeps:

- its own outcome: a body that raises `Rollback`, a library error (`OpenAIFilesError`: a
  quota refused, a conflict) or an `IntegrityError` (an idempotency key taken) has its
  changes undone, and only its caller sees the result or the error; the others commit. A
  group runs first without savepoints (two statements less per write, about an eighth of a
  small upload's CPU on the writer thread); if a body refuses, the group is rolled back and
  run again with each body in a ``SAVEPOINT``, so that only the refused body's is undone;
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
import contextlib
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any, Generic, TypeVar

from sqlalchemy import Connection, Engine
from sqlalchemy.exc import IntegrityError

from .._worker_threads import settle, wait_to_end
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
    """One write waiting for the writer thread, and its caller's future, settled on the
    caller's loop once a group has run the write."""

    __slots__ = ("body", "done", "error", "future", "loop", "result")

    def __init__(self, body: Body[T], loop: asyncio.AbstractEventLoop) -> None:
        self.body = body
        self.loop = loop
        self.future: asyncio.Future[T] = loop.create_future()
        self.done = False
        self.result: T | None = None
        self.error: BaseException | None = None

    def settle(self, result: Any = None, error: BaseException | None = None) -> None:
        """In the writer thread: the outcome, handed to the caller by `_answer`."""
        self.result, self.error, self.done = result, error, True


class GroupCommits:
    """Writes on one thread with its connection of ``engine``, committed in groups (see the
    module).

    A turn of the thread runs groups until no write waits; a write that finds no turn under
    way starts one. Each group's callers are answered together, with one call into their
    loop once the group has committed: a write costs no hand-off of its own to the thread
    and back, only its share of its group's."""

    def __init__(self, engine: Engine, name: str) -> None:
        self._thread = ConnectionThreads(engine, 1, name)
        self._waiting: deque[_Write[Any]] = deque()
        self._lock = threading.Lock()
        self._turning = False  # a turn is queued or running; under `_lock`
        self._last_commit = -BUSY_WITHIN  # by `time.monotonic`, in the writer thread

    async def write(self, body: Body[T]) -> T:
        """Run ``body`` in a transaction (shared with the writes queued beside it), committed
        unless it raises. A cancelled caller waits for the write to end, then is cancelled
        (as `WorkerThreads.run_to_end`): it cannot tell whether the write took effect."""
        write = _Write(body, asyncio.get_running_loop())
        with self._lock:
            self._waiting.append(write)
            start, self._turning = not self._turning, True
        if start:
            self._thread.submit(self._turn).add_done_callback(self._turn_ended)
        return await wait_to_end(write.future)

    async def aclose(self) -> None:
        await self._thread.aclose()

    def _turn(self, connection: Connection) -> None:
        """In the writer thread: groups of the writes waiting, run and answered until none
        is left (a write alone first waits `COMMIT_DELAY` for others while writes are coming
        fast)."""
        while True:
            with self._lock:
                if not self._waiting:
                    self._turning = False
                    return
                alone = len(self._waiting) == 1
            if alone and time.monotonic() - self._last_commit < BUSY_WITHIN:
                time.sleep(COMMIT_DELAY)
            with self._lock:
                taken = min(len(self._waiting), GROUP_MOST)
                group = [self._waiting.popleft() for _ in range(taken)]
            try:
                if len(group) == 1:
                    _alone(connection, group[0])
                else:
                    _together(connection, group)
            except BaseException as exc:
                for write in group:
                    if not write.done:
                        write.settle(error=exc)
                raise
            finally:
                self._last_commit = time.monotonic()
                _answer(group)

    def _turn_ended(self, turn: asyncio.Future[None]) -> None:
        """On the loop: a turn that failed (its connection could not be opened, say) ends the
        writes it left waiting with its error; none is run, as no turn is left to run it."""
        if turn.cancelled() or turn.exception() is None:
            return
        error = turn.exception()
        with self._lock:
            stranded = [*self._waiting]
            self._waiting.clear()
            self._turning = False
        for write in stranded:
            write.settle(error=error)
        _answer(stranded)


def _answer(writes: list[_Write[Any]]) -> None:
    """Hand the outcomes of ``writes`` to their callers: one call into each caller's loop."""
    loops: dict[asyncio.AbstractEventLoop, list[_Write[Any]]] = {}
    for write in writes:
        loops.setdefault(write.loop, []).append(write)
    for loop, settled in loops.items():
        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits any more
            loop.call_soon_threadsafe(_settle, settled)


def _settle(writes: list[_Write[Any]]) -> None:
    for write in writes:
        settle(write.future, write.result, write.error)


def _alone(connection: Connection, write: _Write[Any]) -> None:
    """One write, in a transaction of its own."""
    try:
        write.settle(write_immediate(write.body, connection))
    except Exception as exc:
        write.settle(error=exc)


def _together(connection: Connection, group: list[_Write[Any]]) -> None:
    """The writes of ``group`` in one transaction. Run first without savepoints; if a write
    refuses, the group is rolled back and run again with each write in a savepoint of its
    own, so that only the refused write is undone. If anything but a refusal fails, each
    write runs alone instead."""
    try:
        try:
            outcomes = _in_one_transaction(connection, group, _unguarded)
        except _Refused:
            outcomes = _in_one_transaction(connection, group, _in_savepoint)
    except Exception:
        for write in group:
            _alone(connection, write)
        return
    for write, (result, error) in zip(group, outcomes, strict=True):
        write.settle(result, error)


Outcome = tuple[Any, BaseException | None]
"""What a write of a group gave: its result, or the refusal its caller sees."""


def _in_one_transaction(
    connection: Connection,
    group: list[_Write[Any]],
    run: Callable[[Connection, _Write[Any]], Outcome],
) -> list[Outcome]:
    """Each write of ``group`` by ``run``, in one ``BEGIN IMMEDIATE`` transaction, committed;
    whatever is left open is rolled back however it ends."""
    try:
        connection.exec_driver_sql("BEGIN IMMEDIATE")
        outcomes = [run(connection, write) for write in group]
        connection.commit()
        return outcomes
    finally:
        end_transaction(connection)


class _Refused(Exception):
    """A write of a group run without savepoints refused: the group is run again with them."""


def _unguarded(connection: Connection, write: _Write[Any]) -> Outcome:
    """The result of ``write``; a refusal (`Rollback`, `_REFUSALS`) is `_Refused`, as no
    savepoint can undo it alone."""
    try:
        return write.body(connection), None
    except (Rollback, *_REFUSALS):
        raise _Refused from None


def _in_savepoint(connection: Connection, write: _Write[Any]) -> Outcome:
    """The outcome of ``write`` in a savepoint of its own: its result, or the refusal it
    raised (`_REFUSALS`), undone by the savepoint (`Rollback`: quietly, with its result)."""
    driver = connection.connection.dbapi_connection
    assert driver is not None
    driver.execute(f"SAVEPOINT {_SAVEPOINT}")
    try:
        result = write.body(connection)
    except Rollback as undo:
        _undo(driver)
        return undo.result, None
    except _REFUSALS as refused:
        _undo(driver)
        return None, refused
    driver.execute(f"RELEASE {_SAVEPOINT}")
    return result, None


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
