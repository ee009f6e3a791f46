"""Random bytes for ids, keys and temporary names, drawn from the system's random source
(``os.urandom``) a page at a time rather than a call per value.

Each ``os.urandom`` call is a system call that lets go of the GIL, and taking it back from a
busy worker thread costs a thread switch: a small upload made three of them on the event loop.
The bytes are the same cryptographically secure ones, handed out once each; a forked child
starts with none of its parent's (`os.register_at_fork`), so two processes never share them.
"""

from __future__ import annotations

import os
import threading

__all__ = ["random_below", "random_hex"]

_PAGE = 4096


class _RandomPool:
    """A page of ``os.urandom`` bytes, handed out in order, each byte once; thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._page = b""
        self._used = 0

    def take(self, size: int) -> bytes:
        with self._lock:
            start = self._used
            if start + size > len(self._page):
                self._page, start = os.urandom(max(_PAGE, size)), 0
            self._used = start + size
            return self._page[start : start + size]

    def forget(self) -> None:
        """In a forked child: drop the page, whose bytes are the parent's too, and take a new
        lock (another thread of the parent may have held the old one at the fork)."""
        self._lock = threading.Lock()
        self._page, self._used = b"", 0


_POOL = _RandomPool()
os.register_at_fork(after_in_child=_POOL.forget)


def random_hex(size: int) -> str:
    """``size`` random bytes, never handed out before, as ``2 * size`` hexadecimal digits."""
    return _POOL.take(size).hex()


def random_below(bound: int) -> int:
    """A uniformly random integer in ``[0, bound)`` (``bound`` > 0), by rejection."""
    bits = (bound - 1).bit_length()
    size = (bits + 7) // 8
    while True:
        value = int.from_bytes(_POOL.take(size)) >> (size * 8 - bits)
        if value < bound:
            return value
