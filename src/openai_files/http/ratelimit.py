"""Rate limiting: a pluggable limiter consulted once per request, after authentication.

A limiter is any callable ``(owner, request) -> None | seconds`` (sync or async): None lets
the request through; a number refuses it with 429 ``rate_limit_exceeded`` and a
``Retry-After`` of that many seconds (at most 60, which every SDK version honours).
`TokenBucket` is a simple in-process limiter; with several replicas, each keeps its own
buckets, so plug in a shared one (Redis, the gateway's own) for a global limit.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from starlette.requests import Request

__all__ = ["RateLimiter", "TokenBucket"]

RateLimiter = Callable[[str, Request], Awaitable[float | None] | float | None]


@dataclass
class TokenBucket:
    """Per owner, ``rate`` requests a second on average, in bursts of up to ``burst``."""

    rate: float
    burst: int
    clock: Callable[[], float] = time.monotonic
    _buckets: dict[str, tuple[float, float]] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        if self.rate <= 0 or self.burst < 1:
            raise ValueError("rate must be positive and burst at least 1")

    def __call__(self, owner: str, request: Request | None = None) -> float | None:
        now = self.clock()
        tokens, last = self._buckets.get(owner, (float(self.burst), now))
        tokens = min(float(self.burst), tokens + (now - last) * self.rate)
        if tokens >= 1:
            self._buckets[owner] = (tokens - 1, now)
            return None
        self._buckets[owner] = (tokens, now)
        return (1 - tokens) / self.rate
