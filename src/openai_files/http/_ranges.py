"""Range and conditional requests for downloads (RFC 9110 sections 13 and 14).

Pure functions over header values, so the rules are testable without HTTP: which byte range a
``Range`` header asks for, whether ``If-Range`` lets it apply, and whether ``If-None-Match`` or
``If-Modified-Since`` let the server answer 304.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC
from email.utils import formatdate, parsedate_to_datetime

__all__ = [
    "ByteRange",
    "Unsatisfiable",
    "http_date",
    "not_modified",
    "range_applies",
    "requested_range",
]


@dataclass(frozen=True)
class ByteRange:
    """Bytes ``start`` to ``end`` inclusive, as ``Content-Range`` writes them."""

    start: int
    end: int

    @property
    def length(self) -> int:
        return self.end - self.start + 1

    def content_range(self, size: int) -> str:
        return f"bytes {self.start}-{self.end}/{size}"


class Unsatisfiable(Exception):
    """The Range header is valid but no byte of the file falls in it (answer 416)."""


def requested_range(header: str | None, size: int) -> ByteRange | None:
    """The single byte range that ``header`` asks for in a file of ``size`` bytes.

    None means "serve the whole file": no header, a malformed one (which RFC 9110 says to
    ignore), a unit other than bytes, or several ranges (which may be answered with the whole
    file). `Unsatisfiable` when the range is well-formed but starts past the end.
    """
    if header is None:
        return None
    unit, _, specs = header.partition("=")
    if unit.strip().lower() != "bytes" or "," in specs:
        return None
    first, dash, last = specs.strip().partition("-")
    if not dash or not _digits(first or "0") or not _digits(last or "0"):
        return None
    if not first:  # bytes=-N: the last N bytes
        if not last:
            return None
        suffix = int(last)
        if suffix == 0 or size == 0:
            raise Unsatisfiable
        return ByteRange(max(0, size - suffix), size - 1)
    start = int(first)
    end = int(last) if last else size - 1
    if last and end < start:
        return None
    if start >= size:
        raise Unsatisfiable
    return ByteRange(start, min(end, size - 1))


def range_applies(if_range: str | None, etag: str, last_modified: int) -> bool:
    """Whether a Range may be honoured under ``If-Range``: only if it names the current
    representation, by strong ETag or by exactly its Last-Modified date."""
    if if_range is None:
        return True
    value = if_range.strip()
    if value.startswith(('"', "W/")):
        return value == etag  # strong comparison: a weak tag never matches
    return _timestamp(value) == last_modified


def not_modified(
    if_none_match: str | None, if_modified_since: str | None, etag: str, last_modified: int
) -> bool:
    """Whether a GET or HEAD can be answered 304 Not Modified."""
    if if_none_match is not None:
        tags = [tag.strip().removeprefix("W/") for tag in if_none_match.split(",")]
        return "*" in tags or etag in tags  # weak comparison
    if if_modified_since is not None:
        since = _timestamp(if_modified_since)
        return since is not None and last_modified <= since
    return False


def http_date(timestamp: int) -> str:
    """``Sun, 06 Nov 1994 08:49:37 GMT``."""
    return formatdate(timestamp, usegmt=True)


def _digits(text: str) -> bool:
    return text.isascii() and text.isdigit() and len(text) <= 19


def _timestamp(value: str) -> int | None:
    try:
        parsed = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if parsed.tzinfo is None:  # asctime dates carry no zone, and HTTP dates are all GMT
        parsed = parsed.replace(tzinfo=UTC)
    return int(parsed.timestamp())
