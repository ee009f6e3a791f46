"""The read-ahead loop of `MappedReads.get_mapped`, shared by the backends that offer it: each
block is read and handed to the caller's function in one job on a worker thread, and a few
jobs run ahead of the consumer, so that reading and mapping overlap with what the consumer
does with the results (sending them) and the event loop only awaits them."""

from __future__ import annotations

import asyncio
import functools
from collections import deque
from collections.abc import AsyncGenerator, Callable
from typing import TypeVar

import anyio

__all__ = ["READ_AHEAD", "map_block", "mapped_blocks"]

READ_AHEAD = 2
"""Blocks being read (and mapped) at once ahead of the one the consumer holds: at most this
many and one more are in memory per read."""

R = TypeVar("R")
Mapped = tuple[int, R | None]
"""How many bytes a job read, and what the function made of them (None: it read nothing)."""


def map_block(
    read: Callable[[int, int], bytes | memoryview],
    function: Callable[[int, memoryview], R],
    offset: int,
    size: int,
) -> Mapped[R]:
    """Read ``size`` bytes at ``offset`` (fewer at the end of the object) and map them: the job
    a worker thread runs. The function is not called for no bytes."""
    data = read(offset, size)
    if not data:
        return 0, None
    return len(data), function(offset, memoryview(data))


async def mapped_blocks(
    submit: Callable[[Callable[[], Mapped[R]]], asyncio.Future[Mapped[R]]],
    read: Callable[[int, int], bytes | memoryview],
    function: Callable[[int, memoryview], R],
    *,
    start: int,
    end: int,
    block_size: int,
    first: Mapped[R] | None = None,
    close: Callable[[], None] = lambda: None,
) -> AsyncGenerator[R]:
    """What ``function`` makes of each block of ``[start, end)``, in order, each block read by
    ``read(offset, size)`` and mapped in one job handed to a worker thread by ``submit``, up to
    `READ_AHEAD` jobs at once. ``first``: the first block, already read and mapped (the job
    that opened the object did it). Stops after the first block shorter than asked (the end
    of the object). Calls ``close`` once no job is left, however the iterator ends: a job under
    way when the consumer stops (or is cancelled) is waited for, so ``read`` may use a file
    that ``close`` closes."""
    pending: deque[tuple[int, asyncio.Future[Mapped[R]]]] = deque()
    offset = start

    def fill() -> None:
        nonlocal offset
        while len(pending) < READ_AHEAD and offset < end:
            size = min(block_size, end - offset)
            job = functools.partial(map_block, read, function, offset, size)
            pending.append((size, submit(job)))
            offset += size

    try:
        if first is not None:
            length, result = first
            offset = end if length < min(block_size, end - start) else start + length
            fill()
            if result is not None:
                yield result
        else:
            fill()
        while pending:
            size, future = pending[0]
            # Shielded: a consumer cancelled here must not cancel a job that a thread runs.
            length, result = await asyncio.shield(future)
            pending.popleft()
            if length < size:  # the end of the object: what is read past it is dropped
                offset = end
            else:
                fill()
            if result is not None:
                yield result
            if length < size:
                break
    finally:
        if pending:
            with anyio.CancelScope(shield=True):
                await asyncio.wait([future for _, future in pending])
            for _, future in pending:  # their outcome is no one's any more
                if not future.cancelled():
                    future.exception()
        close()
