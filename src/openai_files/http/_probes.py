"""Liveness and readiness: ``GET /healthz`` and ``GET /readyz``, answered without auth.

Liveness says the process serves and touches no backend. Readiness probes the metadata store
and storage (`FilesService.check`, each within a short timeout) and answers 503 naming the
check that failed and why; its answer is kept for `READINESS_CACHE` seconds and concurrent
probes share one check, so however often a load balancer asks, the backends see at most one
probe a second.
"""

from __future__ import annotations

import time

import anyio
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from .._readiness import Readiness
from ..service import FilesService

__all__ = ["PROBE_TIMEOUT", "READINESS_CACHE", "Probes"]

PROBE_TIMEOUT = 2.0
"""Seconds each backend has to answer a readiness probe."""
READINESS_CACHE = 1.0
"""Seconds a readiness answer is reused."""

_NO_STORE = {"cache-control": "no-store"}


class Probes:
    """The liveness and readiness endpoints of ``service``, to mount as routes (`routes`) or
    to call from a host's own handlers (`liveness`, `readiness`)."""

    def __init__(
        self,
        service: FilesService,
        *,
        within: float = PROBE_TIMEOUT,
        cache_for: float = READINESS_CACHE,
    ) -> None:
        self.service = service
        self.within = within
        self.cache_for = cache_for
        self._checked: tuple[float, Readiness] | None = None
        self._lock: anyio.Lock | None = None

    async def current(self) -> Readiness:
        """The backends' readiness, checked at most once per ``cache_for`` seconds."""
        if self._lock is None:
            self._lock = anyio.Lock()
        async with self._lock:
            now = time.monotonic()
            if self._checked is None or now - self._checked[0] >= self.cache_for:
                readiness = await self.service.check(within=self.within)
                self._checked = (time.monotonic(), readiness)
            return self._checked[1]

    async def liveness(self, request: Request) -> Response:
        """200 ``{"status": "ok"}``: the process serves."""
        return JSONResponse({"status": "ok"}, headers=_NO_STORE)

    async def readiness(self, request: Request) -> Response:
        """200 ``{"status": "ready", "checks": ...}``, or 503 with the check that failed."""
        readiness = await self.current()
        return JSONResponse(
            readiness.as_dict(), status_code=200 if readiness.ready else 503, headers=_NO_STORE
        )

    def routes(self, *, health: str = "/healthz", ready: str = "/readyz") -> list[BaseRoute]:
        """``GET`` (and ``HEAD``) routes for liveness at ``health`` and readiness at ``ready``."""
        return [Route(health, self.liveness), Route(ready, self.readiness)]
