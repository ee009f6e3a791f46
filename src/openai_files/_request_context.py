"""The id of the request being served, for every log record written while it is served.

The HTTP edge sets `REQUEST_ID` for the duration of each request; `RequestIdFilter`, installed
on a logging handler, copies it onto each record as ``record.request_id`` (``"-"`` outside a
request, in the sweeper say), so the library's own log lines carry it without being passed it.
"""

from __future__ import annotations

import logging
from contextvars import ContextVar

__all__ = ["REQUEST_ID", "RequestIdFilter"]

REQUEST_ID: ContextVar[str | None] = ContextVar("openai_files_request_id", default=None)
"""The id of the request being served in this context, or None."""


class RequestIdFilter(logging.Filter):
    """Adds ``request_id`` to every record that passes (it filters nothing out)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "request_id"):
            record.request_id = REQUEST_ID.get() or "-"
        return True
