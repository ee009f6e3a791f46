"""`FilesMetrics`: the Prometheus metrics of the Files API, in a registry the host chooses.

Every name starts with ``openai_files_``. No label ever carries an owner, a file id or a
filename: labels take only a bounded set of values (methods, route templates, statuses,
backends, operations, reasons), so the number of series does not grow with tenants or files.
One registry holds one set (`FilesMetrics.of`): two apps given the same registry share it, two
apps given different registries count apart.
"""

from __future__ import annotations

import os
import threading
from typing import Any
from weakref import WeakKeyDictionary

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

__all__ = ["REFUSALS", "VALIDATION_FAILURES", "FilesMetrics", "metrics_route"]

REFUSALS = frozenset({"quota_exceeded", "rate_limit_exceeded", "file_too_large"})
"""The error codes counted as refusals (``openai_files_refusals_total{reason}``)."""
VALIDATION_FAILURES = frozenset({"invalid_file", "unsupported_file_type"})
"""The error codes counted as validation failures (``openai_files_validation_failures_total``)."""

DURATION_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
"""Seconds: from a list page served from memory to a large upload."""

_sets: WeakKeyDictionary[CollectorRegistry, FilesMetrics] = WeakKeyDictionary()
_sets_lock = threading.Lock()


class FilesMetrics:
    """The Files API's metrics, registered in ``registry`` (Prometheus' default registry
    unless given). Use `FilesMetrics.of` to get the one set of a registry."""

    def __init__(self, registry: CollectorRegistry = REGISTRY) -> None:
        self.registry = registry
        # The children of labelled metrics, looked up once per set of labels: ``labels()``
        # takes a lock and builds a key each time, on the path of every request.
        self._request_children: dict[tuple[str, str, int], tuple[Any, Any]] = {}
        self._backend_children: dict[tuple[str, str], tuple[Any, Any]] = {}
        self.requests = Counter(
            "openai_files_requests_total",
            "HTTP requests answered, by method, route template and status.",
            ("method", "route", "status"),
            registry=registry,
        )
        self.request_duration = Histogram(
            "openai_files_request_duration_seconds",
            "Time from a request's arrival to the end of its response, by method and route.",
            ("method", "route"),
            buckets=DURATION_BUCKETS,
            registry=registry,
        )
        self.uploaded_bytes = Counter(
            "openai_files_uploaded_bytes_total",
            "Bytes of files stored by uploads (POST /files) and of parts added (Uploads API).",
            registry=registry,
        )
        self.downloaded_bytes = Counter(
            "openai_files_downloaded_bytes_total",
            "Bytes of file content sent to clients (GET /files/{file_id}/content).",
            registry=registry,
        )
        self.uploads_in_flight = Gauge(
            "openai_files_uploads_in_flight",
            "Upload requests (files and parts) whose bodies are being received now.",
            registry=registry,
            multiprocess_mode="livesum",
        )
        self.backend_duration = Histogram(
            "openai_files_backend_operation_duration_seconds",
            "Time of storage and metadata store operations, by backend and operation.",
            ("backend", "operation"),
            buckets=DURATION_BUCKETS,
            registry=registry,
        )
        self.backend_errors = Counter(
            "openai_files_backend_errors_total",
            "Storage and metadata store operations that failed as unavailable.",
            ("backend", "operation"),
            registry=registry,
        )
        self.sweeps = Counter(
            "openai_files_sweeps_total",
            "Sweeper runs, by result (ok, failed).",
            ("result",),
            registry=registry,
        )
        self.swept_files = Counter(
            "openai_files_swept_files_total",
            "Records the sweeper removed with their bytes (expired files, dead uploads, "
            "unfinished deletes).",
            registry=registry,
        )
        self.refusals = Counter(
            "openai_files_refusals_total",
            "Requests refused by a quota, a rate limit or a size limit, by reason.",
            ("reason",),
            registry=registry,
        )
        self.validation_failures = Counter(
            "openai_files_validation_failures_total",
            "Uploads refused because their content or type breaks their purpose's rules.",
            ("code",),
            registry=registry,
        )

    @classmethod
    def of(cls, registry: CollectorRegistry | None = None) -> FilesMetrics:
        """The set of metrics registered in ``registry`` (the default one when None),
        registered there on the first call."""
        registry = REGISTRY if registry is None else registry
        with _sets_lock:
            found = _sets.get(registry)
            if found is None:
                found = _sets[registry] = cls(registry)
            return found

    def error(self, code: str) -> None:
        """Count a request answered with the library error ``code``, where it is counted."""
        if code in REFUSALS:
            self.refusals.labels(code).inc()
        elif code in VALIDATION_FAILURES:
            self.validation_failures.labels(code).inc()

    def sweep(self, *, removed: int | None) -> None:
        """Count a sweeper run: None ``removed`` for one that failed."""
        if removed is None:
            self.sweeps.labels("failed").inc()
            return
        self.sweeps.labels("ok").inc()
        self.swept_files.inc(removed)

    def request(self, method: str, route: str, status: int, seconds: float) -> None:
        """Record one request answered."""
        key = (method, route, status)
        children = self._request_children.get(key)
        if children is None:
            children = self._request_children[key] = (
                self.requests.labels(method, route, str(status)),
                self.request_duration.labels(method, route),
            )
        children[0].inc()
        children[1].observe(seconds)

    def backend_operation(self, backend: str, operation: str, seconds: float, failed: bool) -> None:
        """Record one backend operation (see `openai_files.instrumented`)."""
        key = (backend, operation)
        children = self._backend_children.get(key)
        if children is None:
            children = self._backend_children[key] = (
                self.backend_duration.labels(backend, operation),
                self.backend_errors.labels(backend, operation),
            )
        children[0].observe(seconds)
        if failed:
            children[1].inc()


def metrics_route(registry: CollectorRegistry | None = None, path: str = "/metrics") -> Route:
    """``GET /metrics``: ``registry`` (the default one when None) in Prometheus' text format.

    For the default registry in prometheus-client's multiprocess mode
    (``PROMETHEUS_MULTIPROC_DIR`` set, as ``serve --workers N`` does), the metrics of every
    process are added up, whichever process answers."""
    chosen = REGISTRY if registry is None else registry
    if chosen is REGISTRY and os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        chosen = CollectorRegistry()
        multiprocess.MultiProcessCollector(chosen)  # type: ignore[no-untyped-call]

    async def metrics(request: Request) -> Response:
        return Response(generate_latest(chosen), media_type=CONTENT_TYPE_LATEST)

    return Route(path, metrics, methods=["GET"])
