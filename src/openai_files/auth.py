"""Moved to `openai_files.http.auth`; this path warns, and goes in the next release."""

from typing import Any

from ._deprecated import moved_module

_moved = moved_module(__name__)


def __getattr__(name: str) -> Any:
    return getattr(_moved, name)
