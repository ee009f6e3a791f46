"""A deadline for a request's headers in ``openai-files serve``.

uvicorn bounds the wait between two requests on a kept-alive connection, but not the time a
client may take to send a request's headers: a client that opens a connection and sends its
headers a byte at a time, or nothing at all, holds the connection for as long as it likes.
`with_header_timeout` closes such a connection once its headers are not complete in time.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

__all__ = ["with_header_timeout"]

log = logging.getLogger("openai_files")


def with_header_timeout(protocol: type[asyncio.Protocol], seconds: float) -> type[asyncio.Protocol]:
    """A subclass of uvicorn's HTTP ``protocol`` class (h11 or httptools) that closes the
    connection when the headers of a request are not complete ``seconds`` after the
    connection opened or the previous response ended.

    It relies on what both of uvicorn's HTTP/1.1 protocols have: ``cycle`` (the request being
    served, None before the first), ``cycle.response_complete``, ``transport``, ``loop`` and
    ``on_response_complete``. Time spent on a request's body or response does not count.
    """
    base: Any = protocol

    class HeaderTimeoutProtocol(base):  # type: ignore[misc]
        _header_timer: asyncio.TimerHandle | None = None

        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            super().connection_made(transport)
            self._arm_header_timer()

        def data_received(self, data: bytes) -> None:
            super().data_received(data)
            if self._header_timer is not None and not self._between_requests():
                self._disarm_header_timer()

        def on_response_complete(self) -> None:
            super().on_response_complete()
            if self._between_requests():
                self._arm_header_timer()

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm_header_timer()
            super().connection_lost(exc)

        def _between_requests(self) -> bool:
            cycle = getattr(self, "cycle", None)
            return cycle is None or bool(cycle.response_complete)

        def _arm_header_timer(self) -> None:
            self._disarm_header_timer()
            if not self.transport.is_closing():
                self._header_timer = self.loop.call_later(seconds, self._headers_too_slow)

        def _disarm_header_timer(self) -> None:
            if self._header_timer is not None:
                self._header_timer.cancel()
                self._header_timer = None

        def _headers_too_slow(self) -> None:
            self._header_timer = None
            if self._between_requests() and not self.transport.is_closing():
                log.debug("closing a connection whose request headers took over %gs", seconds)
                self.transport.close()

    HeaderTimeoutProtocol.__name__ = f"HeaderTimeout{protocol.__name__}"
    HeaderTimeoutProtocol.__qualname__ = HeaderTimeoutProtocol.__name__
    return HeaderTimeoutProtocol
