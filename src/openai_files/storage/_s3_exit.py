"""A clean exit for a process that used obstore.

obstore runs its requests on a Rust runtime's threads, and each finished request hands its
result to asyncio from such a thread (``call_soon_threadsafe``), which runs Python code there.
On Python before 3.14, a thread that waits for the GIL while the interpreter is finalizing is
ended with ``pthread_exit``; unwinding through the Rust frames beneath it aborts the whole
process (status 134, "Fatal Python error: Aborted"). That happens when a request finishes just
as the process exits: ``openai-files serve`` stopping on a bucket that does not exist did so
about once in twenty runs on a loaded machine.

`wait_for_foreign_threads`, registered with `atexit` when obstore is first used, runs before
finalization starts: while a thread that Python's `threading` does not know is handing a result
to an event loop (inside ``call_soon_threadsafe``), it sleeps, which lets that thread take the
GIL and finish, for at most `EXIT_GRACE` seconds. A thread idle in the runtime holds no Python
frame, and other foreign threads (a test runner's, say) are not waited for.
"""

from __future__ import annotations

import atexit
import sys
import threading
import time
from types import FrameType

__all__ = ["EXIT_GRACE", "register_exit_wait", "wait_for_foreign_threads"]

EXIT_GRACE = 2.0
"""Seconds the exit waits, at most, for foreign threads to hand their results over."""
_POLL = 0.001

_registered = False


def register_exit_wait() -> None:
    """Register `wait_for_foreign_threads` with `atexit`, once per process."""
    global _registered
    if not _registered:
        atexit.register(wait_for_foreign_threads)
        _registered = True


def threads_handing_over() -> set[int]:
    """The idents of the threads, not started by `threading`, that are inside an event loop's
    ``call_soon_threadsafe``."""
    known = {thread.ident for thread in threading.enumerate()}
    return {
        ident
        for ident, frame in sys._current_frames().items()
        if ident not in known and _handing_over(frame)
    }


def _handing_over(frame: FrameType | None) -> bool:
    while frame is not None:
        if frame.f_code.co_name == "call_soon_threadsafe":
            return True
        frame = frame.f_back
    return False


def wait_for_foreign_threads(grace: float = EXIT_GRACE) -> bool:
    """Sleep until no foreign thread is in ``call_soon_threadsafe``, for at most ``grace``
    seconds; whether none was left."""
    deadline = time.monotonic() + grace
    while threads_handing_over():
        if time.monotonic() >= deadline:
            return False
        time.sleep(_POLL)
    return True
