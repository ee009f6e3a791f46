"""The HTTP edge: the Files API (and Uploads API) as Starlette routes and an ASGI app.

This subpackage is the only part of openai-files that knows about HTTP: it authenticates
requests, applies rate limits, parses multipart bodies and ranges, calls the library
(`FilesService`, `Uploads`) and turns its errors into OpenAI-shaped responses, with the status
of each error written once, in `openai_files.http._responses`. HTTP choices, such as answering
a file too large with 400 instead of 413, are arguments here
(``create_app(file_too_large_status=...)``), never part of the `Policy`.

Public: `create_app`, `files_routes` and `exception_handlers` (`openai_files.http.app`), the
authenticators (`openai_files.http.auth`), the rate limiters (`openai_files.http.ratelimit`),
`FormLimits`, and the operations pieces a host mounts or registers itself: `Probes` (liveness
and readiness), `FilesMetrics` and `metrics_route` (Prometheus), `RequestObserver` (request
ids, access log lines, metrics of each request), `RequestIdFilter` (the request id on log
records) and `admin_routes` (the usage of every owner).
The underscored modules (request handlers, multipart parsing, ranges, responses, the OpenAPI
document) are not public API.
"""

from .._request_context import RequestIdFilter
from ._admin import admin_routes
from ._metrics import FilesMetrics, metrics_route
from ._multipart import FormLimits
from ._observer import RequestObserver
from ._probes import Probes
from .app import DEFAULT_PREFIXES, create_app, exception_handlers, files_routes
from .auth import SCOPE_OWNER_KEY, Authenticator, api_key_auth, open_auth, scope_owner_auth
from .ratelimit import RateLimiter, TokenBucket

__all__ = [
    "DEFAULT_PREFIXES",
    "SCOPE_OWNER_KEY",
    "Authenticator",
    "FilesMetrics",
    "FormLimits",
    "Probes",
    "RateLimiter",
    "RequestIdFilter",
    "RequestObserver",
    "TokenBucket",
    "admin_routes",
    "api_key_auth",
    "create_app",
    "exception_handlers",
    "files_routes",
    "metrics_route",
    "open_auth",
    "scope_owner_auth",
]
