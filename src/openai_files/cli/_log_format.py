"""How ``openai-files serve`` writes its log: text lines (the default) or one JSON object a
line (``--log-format json``), both carrying the request id of the request being served.

In JSON, every record is ``{"time", "level", "logger", "message", "request_id", ...}``
(``request_id`` null outside a request); an access record (logger ``openai_files.access``,
one per request) adds ``method``, ``path`` (the
route template, never a file id), ``status``, ``duration_ms``, ``owner``, ``bytes_in``,
``bytes_out``, and ``error`` (the error code) and ``client`` where there is one. uvicorn's own
records go through the same handler, and its text access lines are off.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any

from .._request_context import RequestIdFilter

__all__ = ["LOG_FORMATS", "JSONFormatter", "configure_logging"]

LOG_FORMATS = ("text", "json")


class JSONFormatter(logging.Formatter):
    """One JSON object per record (see the module's text)."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": _utc(record.created),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
            "request_id": _request_id(record),
        }
        access = getattr(record, "access", None)
        if isinstance(access, dict):
            entry.update(access)
        if record.process and getattr(record, "worker", False):
            entry["pid"] = record.process
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False, default=str)


def _request_id(record: logging.LogRecord) -> str | None:
    found = getattr(record, "request_id", None)
    return None if found in (None, "-") else str(found)


def _utc(created: float) -> str:
    seconds = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(created))
    return f"{seconds}.{int(created % 1 * 1000):03d}Z"


def configure_logging(level: str, *, worker: bool = False, log_format: str = "text") -> None:
    """The log on stderr at ``level``: text lines (a worker's carry its pid) or JSON objects.

    The access log (``openai_files.access``) is on in JSON only: in text, uvicorn writes its
    own access lines, as it always has."""
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(RequestIdFilter())
    if log_format == "json":
        handler.setFormatter(JSONFormatter())
    else:
        where = "[%(process)d] " if worker else ""
        handler.setFormatter(logging.Formatter(f"%(levelname)s:  {where}%(message)s"))
    logging.basicConfig(level=level.upper(), handlers=[handler])
    access = logging.getLogger("openai_files.access")
    access.setLevel(logging.INFO if log_format == "json" else logging.WARNING)
