"""Where the client commands go when neither ``--base-url`` nor ``OPENAI_BASE_URL`` says: the
server that ``openai-files serve`` (and ``make serve``) starts, never a hosted API."""

from __future__ import annotations

__all__ = ["DEFAULT_BASE_URL", "START_HINT"]

DEFAULT_BASE_URL = "http://127.0.0.1:8000/v1"
"""The local ``openai-files serve`` with its default host and port."""
START_HINT = (
    "start the local server with 'make serve' or 'openai-files serve', "
    "or name another with --base-url or OPENAI_BASE_URL"
)
"""Added to a failure to reach `DEFAULT_BASE_URL`."""
