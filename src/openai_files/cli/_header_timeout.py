"""A deadline and a size bound for a request's headers in ``openai-files serve``.

uvicorn bounds the wait between two requests on a kept-alive connection, but not the time a
client may take to send a request's headers: a client that opens a connection and sends its
headers a byte at a time, or nothing at all, holds the connection for as long as it likes.
`with_header_timeout` closes such a connection once its headers are not complete in time.

Nor does uvicorn bound the headers' size on httptools (its h11 protocol refuses a head over
16 KiB): the parser keeps a header of any length, and the app receives thousands of them. The
same subclass answers 431 and closes the connection once a request's head passes
`MAX_HEAD_BYTES` or `MAX_HEADERS`, on either protocol.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

__all__ = ["MAX_HEADERS", "MAX_HEAD_BYTES", "with_header_timeout"]

MAX_HEAD_BYTES = 64 * 1024
"""The most bytes a request line and its headers may take."""
MAX_HEADERS = 256
"""The most header fields a request may carry."""

_TOO_LARGE = (
    b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-type: text/plain\r\n"
    b"content-length: 35\r\nconnection: close\r\n\r\nThe request's headers are too large"
)

log = logging.getLogger("openai_files")


def with_header_timeout(protocol: type[asyncio.Protocol], seconds: float) -> type[asyncio.Protocol]:
    """A subclass of uvicorn's HTTP ``protocol`` class (h11 or httptools) that closes the
    connection when the headers of a request are not complete ``seconds`` after the
    connection opened or the previous response ended (0: no deadline), and refuses a request
    whose head passes `MAX_HEAD_BYTES` (431 while it arrives; 400 from the parser when it came
    whole in one read) or, on httptools, `MAX_HEADERS` fields (400).

    It relies on what both of uvicorn's HTTP/1.1 protocols have: ``cycle`` (the request being
    served, None before the first), ``cycle.response_complete``, ``transport``, ``loop`` and
    ``on_response_complete``. Time spent on a request's body or response does not count.
    """
    base: Any = protocol

    class HeaderTimeoutProtocol(base):  # type: ignore[misc]
        _header_timer: asyncio.TimerHandle | None = None
        _in_head = False
        _head_bytes = 0
        _headers = 0
        _header_bytes = 0

        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            super().connection_made(transport)
            self._arm_header_timer()

        def data_received(self, data: bytes) -> None:
            super().data_received(data)
            if self._in_head:  # httptools: a request's head still incomplete after this read
                self._head_bytes += len(data)
                if self._head_bytes > MAX_HEAD_BYTES:
                    self._refuse_head()
            if self._header_timer is not None and not self._between_requests():
                self._disarm_header_timer()

        def on_message_begin(self) -> None:  # httptools: a request's head starts
            self._in_head, self._head_bytes, self._headers, self._header_bytes = True, 0, 0, 0
            super().on_message_begin()

        def on_headers_complete(self) -> None:  # httptools: the head is whole
            self._in_head = False
            super().on_headers_complete()

        def on_header(self, name: bytes, value: bytes) -> None:  # httptools: one header field
            self._headers += 1
            self._header_bytes += len(name) + len(value)
            # An error in a parser callback is a parse error: uvicorn answers 400 and closes.
            if self._headers > MAX_HEADERS:
                raise ValueError(f"more than {MAX_HEADERS} header fields")
            if self._header_bytes > MAX_HEAD_BYTES:  # a head that came whole in one read
                raise ValueError(f"headers over {MAX_HEAD_BYTES} bytes")
            super().on_header(name, value)

        def _refuse_head(self) -> None:
            if not self.transport.is_closing():
                log.debug("closing a connection whose request head passed %d bytes", MAX_HEAD_BYTES)
                self.transport.write(_TOO_LARGE)
                self.transport.close()

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
            if seconds and not self.transport.is_closing():
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
