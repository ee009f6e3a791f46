"""The time as the library reads it: a clock is any callable returning Unix seconds.

`FilesService` takes one (``time.time`` by default); tests pass a `ManualClock`, which stands
still until they move it, so that expiry, staleness and orphan grace periods can be tested
without waiting.
"""

from __future__ import annotations

import time
from collections.abc import Callable

__all__ = ["Clock", "ManualClock"]

Clock = Callable[[], float]
"""Returns the current Unix time in seconds."""


class ManualClock:
    """A clock that stands still until it is moved: ``advance`` it, or set ``now``.

    It starts at ``now``, by default the current whole second of the real time (so that it
    agrees with the modification times a storage records for its files).
    """

    def __init__(self, now: float | None = None) -> None:
        self.now = float(int(time.time())) if now is None else now

    def __repr__(self) -> str:
        return f"ManualClock(now={self.now!r})"

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        """Move the clock on by ``seconds``."""
        self.now += seconds
