"""Where obstore's errors become ours: every failure of S3, of the network or of the
credentials is a `BackendUnavailable` whose message names the cause a person can act on."""

from __future__ import annotations

import re

from obstore.exceptions import BaseError, PermissionDeniedError, UnauthenticatedError

from ..errors import BackendUnavailable

__all__ = ["DRIVER_ERRORS", "first_line", "range_ignored", "unavailable"]

DRIVER_ERRORS = (BaseError, OSError)
"""What obstore raises: its own errors, and builtin OSErrors from its buffered writer."""


def range_ignored(exc: BaseException) -> bool:
    """Whether a ranged GET failed because the server answered it with the whole object."""
    return "non-partial response" in str(exc)


def unavailable(action: str, exc: BaseException) -> BackendUnavailable:
    """The error for ``exc``, raised by obstore while ``action`` ("reading 'key'")."""
    # The buffered writer re-raises obstore's errors as plain OSErrors, so the HTTP status in
    # the message is the one clue that every path keeps.
    text = str(exc)
    found = re.search(r"status code: (\d{3})", text)
    status = int(found.group(1)) if found else None
    if isinstance(exc, PermissionDeniedError | UnauthenticatedError) or status in {401, 403}:
        reason = "S3 refused the credentials"
    elif "NoSuchUpload" in text:  # a retried commit whose first try went through late
        reason = "S3 no longer knew the multipart upload (completed or aborted meanwhile)"
    elif isinstance(exc, FileNotFoundError) or status == 404:
        reason = "the S3 bucket was not found"
    elif "error sending request" in text or "timed out" in text.lower():
        reason = "the S3 endpoint could not be reached"
    elif status is not None and status >= 500:
        reason = f"the S3 server failed (HTTP {status})"
    else:
        reason = "the S3 request failed"
    return BackendUnavailable(f"Storage is unavailable: {reason} while {action}.")


def first_line(exc: BaseException) -> str:
    """The first line of the driver's message, for a note on another error."""
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
