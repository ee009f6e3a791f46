"""`RequestObserver`: the request id, the access log line and the metrics of every request.

A pure ASGI middleware, on the path of every request, so it does the least it can: it reads
``X-Request-ID`` (or makes an id from a per-process prefix and a counter), sets it for the
library's log records (`openai_files._request_context`), adds it to the response's headers,
counts the body bytes that pass in each direction, and once the response is sent, records
the request in `FilesMetrics` and, when the access logger is enabled for INFO, writes one
access line. The route label is the template Starlette matched (``/v1/files/{file_id}``),
never the path a client sent; the owner is what the endpoints put in the scope once the caller
is authenticated.
"""

from __future__ import annotations

import itertools
import logging
import re
import secrets
import time
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .._request_context import REQUEST_ID
from ._metrics import FilesMetrics
from .auth import SCOPE_OWNER_KEY

__all__ = [
    "ERROR_CODE_KEY",
    "OWNER_KEY",
    "REQUEST_ID_HEADER",
    "UPLOADED_BYTES_KEY",
    "InFlight",
    "RequestObserver",
    "access_log",
]

REQUEST_ID_HEADER = b"x-request-id"
OWNER_KEY = SCOPE_OWNER_KEY
"""Scope key: the authenticated owner of the request (set by the endpoints once they know it,
where `scope_owner_auth` reads a host's)."""
ERROR_CODE_KEY = "openai_files.error_code"
"""Scope key: the code of the library error the request was answered with."""
UPLOADED_BYTES_KEY = "openai_files.uploaded_bytes"
"""Scope key: bytes of a file (or part) the request stored."""
UNMATCHED = "unmatched"
"""The route label of a request no route matched (a 404), so that paths never become labels."""

access_log = logging.getLogger("openai_files.access")
"""The access log: one INFO record per request, its fields in ``record.access``."""

_ACCEPTED_ID = re.compile(rb"[!-~]{1,128}")
_ID_PREFIX = secrets.token_hex(6)
_ids = itertools.count(1)
_UPLOAD_ROUTES = ("/files", "/parts")


def new_request_id() -> str:
    """A fresh id: unique within the process by its counter, across processes by its prefix."""
    return f"{_ID_PREFIX}{next(_ids):08x}"


class _Exchange:
    __slots__ = ("bytes_in", "bytes_out", "status")

    def __init__(self) -> None:
        self.status = 500  # the app ended without a response: the server answers 500
        self.bytes_in = 0
        self.bytes_out = 0


class InFlight:
    """How many requests an app is serving now, so that its shutdown can wait for those a
    server cancelled to finish cleaning up before the service closes."""

    __slots__ = ("count",)

    def __init__(self) -> None:
        self.count = 0


class RequestObserver:
    """Wraps ``app`` (see the module's text); ``metrics`` None records no metrics;
    ``in_flight``, when given, counts the requests being served."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        metrics: FilesMetrics | None = None,
        in_flight: InFlight | None = None,
    ) -> None:
        self.app = app
        self.metrics = metrics
        self.in_flight = in_flight or InFlight()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = None
        for name, value in scope["headers"]:
            if name == REQUEST_ID_HEADER:
                if _ACCEPTED_ID.fullmatch(value):
                    request_id = value.decode("ascii")
                break
        if request_id is None:
            request_id = new_request_id()
        header = (REQUEST_ID_HEADER, request_id.encode("ascii"))
        exchange = _Exchange()
        started = time.perf_counter()

        async def counted_receive() -> Message:
            message = await receive()
            body = message.get("body")
            if body:
                exchange.bytes_in += len(body)
            return message

        async def observed_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                exchange.status = message["status"]
                message["headers"] = [*message.get("headers", ()), header]
            elif message["type"] == "http.response.body":
                exchange.bytes_out += len(message.get("body", b""))
            await send(message)

        token = REQUEST_ID.set(request_id)
        self.in_flight.count += 1
        upload = self.metrics is not None and _is_upload(scope)
        if upload:
            self.metrics.uploads_in_flight.inc()  # type: ignore[union-attr]
        try:
            await self.app(scope, counted_receive, observed_send)
        finally:
            self.in_flight.count -= 1
            if upload:
                self.metrics.uploads_in_flight.dec()  # type: ignore[union-attr]
            seconds = time.perf_counter() - started
            route = scope.get("route")
            template = route.path if route is not None and hasattr(route, "path") else UNMATCHED
            if self.metrics is not None:
                self._record(scope, template, exchange, seconds)
            if access_log.isEnabledFor(logging.INFO):
                _log_access(scope, request_id, template, exchange, seconds)
            REQUEST_ID.reset(token)

    def _record(self, scope: Scope, template: str, exchange: _Exchange, seconds: float) -> None:
        metrics = self.metrics
        assert metrics is not None
        method = scope["method"]
        metrics.request(method, template, exchange.status, seconds)
        code = scope.get(ERROR_CODE_KEY)
        if code is not None:
            metrics.error(code)
        stored = scope.get(UPLOADED_BYTES_KEY)
        if stored:
            metrics.uploaded_bytes.inc(stored)
        if exchange.status in (200, 206) and method == "GET" and template.endswith("/content"):
            metrics.downloaded_bytes.inc(exchange.bytes_out)


def _is_upload(scope: Scope) -> bool:
    path: str = scope["path"]
    return scope["method"] == "POST" and path.endswith(_UPLOAD_ROUTES)


def _log_access(
    scope: Scope, request_id: str, template: str, exchange: _Exchange, seconds: float
) -> None:
    fields: dict[str, Any] = {
        "request_id": request_id,
        "method": scope["method"],
        "path": template,
        "status": exchange.status,
        "duration_ms": round(seconds * 1000, 3),
        "owner": scope.get(OWNER_KEY),
        "bytes_in": exchange.bytes_in,
        "bytes_out": exchange.bytes_out,
    }
    code = scope.get(ERROR_CODE_KEY)
    if code is not None:
        fields["error"] = code
    client = scope.get("client")
    if client:
        fields["client"] = client[0]
    access_log.info(
        "%s %s %d %.1fms",
        fields["method"],
        template,
        exchange.status,
        fields["duration_ms"],
        extra={"access": fields, "request_id": request_id},
    )
