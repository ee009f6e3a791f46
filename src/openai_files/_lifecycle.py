"""A service's lifetime in a running application: its sweeper in a task while the app runs,
then the sweeper stopped and the service closed. `FilesService.running` is the public door;
`openai_files.http.create_app`'s own lifespan uses it, and so does a host that mounts the app
(Starlette does not run a mounted app's lifespan)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from functools import partial
from typing import TYPE_CHECKING, Protocol, TypeVar

import anyio

if TYPE_CHECKING:
    from .sweeper import SweepReport

__all__ = ["SWEEP_SHUTDOWN_GRACE", "running"]

SWEEP_SHUTDOWN_GRACE = 30.0
"""Seconds a sweep in progress at shutdown may take to finish before it is cut off."""


class Sweepable(Protocol):
    """What `running` needs of a service: `FilesService.run_sweeper` and ``aclose``."""

    async def run_sweeper(
        self,
        *,
        interval: float,
        stale_after: int,
        stop: anyio.Event | None,
        on_sweep: Callable[[SweepReport | None], None] | None,
    ) -> None: ...

    async def aclose(self) -> None: ...


S = TypeVar("S", bound=Sweepable)


@asynccontextmanager
async def running(
    service: S,
    *,
    sweep_interval: float | None,
    stale_after: int,
    close: bool,
    on_sweep: Callable[[SweepReport | None], None] | None = None,
) -> AsyncIterator[S]:
    """The service, with its sweeper running every ``sweep_interval`` seconds (None: no
    sweeper) until the block ends; then a sweep in progress finishes (within
    `SWEEP_SHUTDOWN_GRACE`) and, when ``close``, the service is closed. ``on_sweep`` gets
    each sweep's report (None for one that failed), for metrics."""
    try:
        async with anyio.create_task_group() as tasks:
            stop = anyio.Event()
            if sweep_interval:
                sweeper = partial(
                    service.run_sweeper,
                    interval=sweep_interval,
                    stale_after=stale_after,
                    stop=stop,
                    on_sweep=on_sweep,
                )
                tasks.start_soon(sweeper)
            yield service
            stop.set()
            tasks.cancel_scope.deadline = anyio.current_time() + SWEEP_SHUTDOWN_GRACE
    finally:
        if close:
            await service.aclose()
