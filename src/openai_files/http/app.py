"""`create_app`: the Files API as a Starlette application, under ``/files`` and ``/v1/files``."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from functools import partial
from urllib.parse import quote

import anyio
from prometheus_client import CollectorRegistry
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Match, Route, Router
from starlette.types import ASGIApp, Receive, Scope, Send

from .._lifecycle import running
from .._outage_log import OutageLog
from ..errors import BackendUnavailable, OpenAIFilesError
from ..service import FilesService
from ..storage import PresignedURLs
from ..sweeper import SweepReport
from ._admin import admin_routes
from ._files_api import FilesEndpoints
from ._metrics import FilesMetrics, metrics_route
from ._multipart import FormLimits
from ._observer import ERROR_CODE_KEY, InFlight, RequestObserver
from ._openapi import openapi_document, openapi_route
from ._probes import Probes
from ._responses import (
    FILE_TOO_LARGE_STATUS_KEY,
    error_response,
    openai_error,
    too_large_status,
)
from ._uploads_api import UploadsEndpoints
from .auth import Authenticator, open_auth
from .ratelimit import RateLimiter

__all__ = ["create_app", "files_routes"]

log = logging.getLogger("openai_files")

DEFAULT_PREFIXES = ("", "/v1")
CLEANUP_GRACE = 5.0
"""Seconds the requests still in flight at shutdown (cancelled by a server whose graceful
timeout passed) have to clean up what they wrote before the service closes."""
outages = OutageLog(log)
"""Where the edge reports backends' failures (with the driver's message, once per burst)."""


def files_routes(
    service: FilesService,
    *,
    auth: Authenticator | None = None,
    prefixes: Sequence[str] = DEFAULT_PREFIXES,
    form_limits: FormLimits | None = None,
    presigned_downloads: int | None = None,
    rate_limiter: RateLimiter | None = None,
    uploads_api: bool = True,
    file_too_large_status: int | None = None,
) -> list[BaseRoute]:
    """The Files API routes (and, unless ``uploads_api`` is False, the Uploads API's), to
    include in a host's own route list.

    Errors raised by the handlers are library errors; install `exception_handlers` (as
    `create_app` does) to turn them into OpenAI-shaped responses. ``file_too_large_status``
    (413, OpenAI's, or 400 as some platforms answer; see `create_app`) travels with each
    request to those handlers. (Unset, the deprecated `Policy.file_too_large_status` applies
    when the host's ``app.state.service`` is ``service``, for one release.)
    """
    endpoints = FilesEndpoints(
        service, auth or open_auth(), form_limits or FormLimits(), presigned_downloads, rate_limiter
    )
    uploads = UploadsEndpoints(endpoints)
    routes: list[BaseRoute] = []
    for prefix in prefixes:
        base = f"{prefix.rstrip('/')}/uploads"
        if uploads_api:
            routes += [
                Route(base, uploads.create, methods=["POST"]),
                Route(base + "/{upload_id}/parts", uploads.add_part, methods=["POST"]),
                Route(base + "/{upload_id}/complete", uploads.complete, methods=["POST"]),
                Route(base + "/{upload_id}/cancel", uploads.cancel, methods=["POST"]),
            ]
        base = f"{prefix.rstrip('/')}/files"
        # One route per path, so a wrong method's 405 lists every method the path accepts.
        routes += [
            Route(base, endpoints.collection, methods=["GET", "POST"]),
            Route(base + "/{file_id}", endpoints.item, methods=["GET", "DELETE"]),
            Route(base + "/{file_id}/content", endpoints.content, methods=["GET", "HEAD"]),
        ]
    if file_too_large_status is not None:
        status = too_large_status(file_too_large_status, service.policy)
        for route in routes:
            assert isinstance(route, Route)
            route.app = _with_scope(route.app, FILE_TOO_LARGE_STATUS_KEY, status)
    return routes


def _with_scope(app: ASGIApp, key: str, value: object) -> ASGIApp:
    """``app``, with ``scope[key] = value`` set for it and for the error handlers it reaches."""

    async def call(scope: Scope, receive: Receive, send: Send) -> None:
        scope[key] = value
        await app(scope, receive, send)

    return call


async def _library_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, OpenAIFilesError)
    request.scope[ERROR_CODE_KEY] = exc.code  # for the metrics and the access log
    if isinstance(exc, BackendUnavailable):
        outages.failed(exc)
    status = request.scope.get(FILE_TOO_LARGE_STATUS_KEY)
    if status is None:
        # Deprecated, goes with `Policy.file_too_large_status`: routes given no status follow
        # the policy of the service a host shares at ``app.state.service``.
        service = getattr(request.app.state, "service", None)
        status = service.policy.file_too_large_status if isinstance(service, FilesService) else 413
    return error_response(exc, file_too_large_status=status)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    if exc.status_code == 405:
        message = f"Method {request.method} is not allowed on {request.url.path}."
    elif exc.status_code == 404:
        message = f"Unknown path: {request.url.path}."
    else:
        message = str(exc.detail)
    return openai_error(
        exc.status_code, message, type="invalid_request_error", headers=dict(exc.headers or {})
    )


async def _unexpected_error(request: Request, exc: Exception) -> Response:
    log.exception("unexpected error serving %s %s", request.method, request.url.path)
    return openai_error(
        500, "The server had an error while processing your request.", type="server_error"
    )


exception_handlers: dict[type[Exception] | int, Callable[[Request, Exception], Awaitable[Response]]]
exception_handlers = {
    OpenAIFilesError: _library_error,
    HTTPException: _http_error,
    Exception: _unexpected_error,
}


def create_app(
    service: FilesService,
    *,
    auth: Authenticator | None = None,
    prefixes: Sequence[str] = DEFAULT_PREFIXES,
    form_limits: FormLimits | None = None,
    presigned_downloads: int | None = None,
    rate_limiter: RateLimiter | None = None,
    sweep_interval: float | None = None,
    sweep_stale_after: int = 3600,
    close_service: bool = False,
    openapi: bool = False,
    uploads_api: bool = True,
    file_too_large_status: int | None = None,
    probes: bool = False,
    metrics: CollectorRegistry | bool = False,
    admin_key: str | None = None,
) -> Starlette:
    """An ASGI app serving the Files API for ``service``.

    - ``auth``: turns a request into an owner (default: everyone is the owner ``default``).
    - ``prefixes``: where the ``/files`` routes live (default both ``/files`` and ``/v1/files``).
    - ``presigned_downloads``: when set (seconds of validity) and the storage can sign URLs,
      ``GET .../content`` answers 307 with a presigned URL, so bytes go straight from the object
      store to the client; the client's API key is not forwarded to the other host.
    - ``rate_limiter``: consulted once per request after authentication (see
      `openai_files.ratelimit`); a refusal is 429 with ``Retry-After``.
    - ``sweep_interval``: run the sweeper (expired files, dead uploads, failed deletes) every
      so many seconds while the app runs. Starlette does not run a mounted app's lifespan: a
      host that mounts this app runs ``async with service.running(sweep_interval=...)`` in its
      own (see `FilesService.running`).
      ``sweep_stale_after``: seconds after which an unfinished upload or delete counts as dead
      (see `FilesService.sweep`); keep it above the time your largest upload takes.
    - ``close_service``: close the service when the app shuts down (for a standalone server
      that owns it; a host that shares the service closes it itself).
    - ``openapi``: also serve ``GET /openapi.json`` (at the app's root, not under each prefix):
      the OpenAPI 3.1 document of these routes, built once from the service's policy and the
      prefixes (see `openai_files.openapi`).
    - ``uploads_api``: also serve the Uploads API (``/uploads``, its parts, ``complete`` and
      ``cancel``); False answers 404 there, as for any unknown path.
    - ``file_too_large_status``: the HTTP status of ``file_too_large`` errors: 413 (OpenAI's,
      the default) or 400, as some platforms answer; the OpenAPI document follows it. (Unset,
      the deprecated `Policy.file_too_large_status` still applies, for one release.)
    - ``probes``: also serve ``GET /healthz`` (liveness) and ``GET /readyz`` (readiness of
      both backends, cached for a second), without auth (see `Probes`).
    - ``metrics``: count requests, bytes and refusals in Prometheus metrics (`FilesMetrics`)
      and serve them at ``GET /metrics``: True for the default registry, or a registry of
      the host's own. A host that serves its own ``/metrics`` wraps its app in
      `RequestObserver` instead (see the mounting guide).
    - ``admin_key``: also serve ``GET /admin/usage``, every owner's usage, to this key only
      (see `admin_routes`); without it the route does not exist.

    Every response carries an ``X-Request-ID`` (the client's, or a fresh one), which the
    library's log records carry too; with the ``openai_files.access`` logger enabled for
    INFO, every request writes one access record.

    The service is at ``app.state.service``. Mount the app in a host with
    ``Mount("/", app=create_app(...))`` after the host's own routes, or under a prefix. Every
    error is answered in OpenAI's error shape.
    """

    counted = None if metrics is False else FilesMetrics.of(None if metrics is True else metrics)
    in_flight = InFlight()

    def on_sweep(report: SweepReport | None) -> None:
        if counted is not None:
            counted.sweep(removed=None if report is None else report.removed)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with running(
            service,
            sweep_interval=sweep_interval,
            stale_after=sweep_stale_after,
            close=close_service,
            on_sweep=on_sweep,
        ):
            yield
            with anyio.move_on_after(CLEANUP_GRACE):
                # Polled: an event set by the last request out would cost every request.
                while in_flight.count:  # noqa: ASYNC110
                    await anyio.sleep(0.05)

    status = too_large_status(file_too_large_status, service.policy)
    routes = files_routes(
        service,
        auth=auth,
        prefixes=prefixes,
        form_limits=form_limits,
        presigned_downloads=presigned_downloads,
        rate_limiter=rate_limiter,
        uploads_api=uploads_api,
        file_too_large_status=status,
    )
    if openapi:
        redirects = bool(presigned_downloads) and isinstance(service.storage, PresignedURLs)
        document = openapi_document(
            service.policy,
            prefixes,
            download_redirects=redirects,
            uploads_api=uploads_api,
            file_too_large_status=status,
        )
        routes.append(openapi_route(document))
    if probes:
        routes += Probes(service).routes()
    if admin_key is not None:
        routes += admin_routes(service, admin_key=admin_key)
    if counted is not None:
        routes.append(metrics_route(counted.registry))
    app = Starlette(
        routes=routes,
        exception_handlers=exception_handlers,
        lifespan=lifespan,
        middleware=[Middleware(RequestObserver, metrics=counted, in_flight=in_flight)],
    )
    app.state.service = service
    app.router.redirect_slashes = False  # Starlette's redirect names the client's Host
    app.router.default = partial(_redirect_slash_or_not_found, app.router)
    return app


async def _redirect_slash_or_not_found(
    router: Router, scope: Scope, receive: Receive, send: Send
) -> None:
    """``/v1/files/`` redirects to ``/v1/files`` (and the other way round) as Starlette's
    ``redirect_slashes`` does, but with a relative ``Location``: a path on the server the
    client already talks to, never a URL built from the request's ``Host`` header."""
    path: str = scope["path"]
    if scope["type"] == "http" and path != "/":
        other = dict(scope, path=path.rstrip("/") if path.endswith("/") else path + "/")
        if any(route.matches(other)[0] is not Match.NONE for route in router.routes):
            location = "/" + quote(other["path"]).lstrip("/")
            if scope.get("query_string"):
                location += "?" + scope["query_string"].decode("latin-1")
            await RedirectResponse(location)(scope, receive, send)
            return
    await router.not_found(scope, receive, send)
