"""`OutageLog`: a backend's failures in the log, with the driver's own message, once per burst.

A database that goes away fails every request until it is back; one line per request would
bury the log, and none at all (only 503s) hides the cause. The first failure is logged with
the driver's message (credentials masked, see `driver_message`), then at most one line every
`REPEAT_EVERY` seconds while the failures go on, saying how many there were meanwhile.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from ._readiness import driver_message

__all__ = ["REPEAT_EVERY", "OutageLog"]

REPEAT_EVERY = 30.0
"""Seconds between two lines about failures of the same burst."""


class OutageLog:
    """Logs `BackendUnavailable` errors to ``logger`` once per burst (see the module's text)."""

    def __init__(
        self,
        logger: logging.Logger,
        *,
        every: float = REPEAT_EVERY,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._logger = logger
        self._every = every
        self._clock = clock
        self._lock = threading.Lock()
        self._logged_at: float | None = None
        self._unlogged = 0

    def failed(self, exc: BaseException) -> None:
        """Note one failure; log it unless a line about this burst was written lately."""
        now = self._clock()
        with self._lock:
            if self._logged_at is not None and now - self._logged_at < self._every:
                self._unlogged += 1
                return
            unlogged, self._unlogged, self._logged_at = self._unlogged, 0, now
        since = f" ({unlogged} more failure(s) since the last line)" if unlogged else ""
        self._logger.error("a backend failed: %s%s", driver_message(exc), since)
