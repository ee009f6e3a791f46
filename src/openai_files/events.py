"""Events: hooks called after a file is created, deleted or expired (billing, audit logs).

A hook is any callable taking a `FileEvent`, sync or async. Hooks run after the change is
committed, in the order given; a hook that fails is logged and never breaks the request or
the other hooks.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Literal

from .models import FileObject

__all__ = ["EventHook", "FileEvent", "FileEventKind", "emit"]

log = logging.getLogger("openai_files")

FileEventKind = Literal["created", "deleted", "expired"]


@dataclass(frozen=True)
class FileEvent:
    """Something that happened to a file: ``kind``, whose it is, the file, and when (Unix s)."""

    kind: FileEventKind
    owner: str
    file: FileObject
    at: int


EventHook = Callable[[FileEvent], Awaitable[None] | None]


async def emit(hooks: Sequence[EventHook], event: FileEvent) -> None:
    """Call every hook with ``event``; log, and otherwise ignore, a hook's failure."""
    for hook in hooks:
        try:
            result = hook(event)
            if inspect.isawaitable(result):
                await result
        except Exception:
            log.exception("event hook %r failed on %s of %s", hook, event.kind, event.file.id)
