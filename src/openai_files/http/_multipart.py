"""Incremental multipart/form-data reading over an async byte stream.

`MultipartReader` drives python-multipart's callback parser with the request body as it
arrives and hands the parts out one at a time: text fields as bounded strings, file parts as
an async iterator of chunks that flows straight into storage. Nothing is spooled, and memory
use is bounded by one network chunk plus the limits below, whatever the size of the body.
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass

from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header

from ..errors import MalformedUpload, RequestTooLarge, shown

__all__ = ["FormLimits", "MultipartReader", "Part", "boundary_from_content_type"]


@dataclass(frozen=True)
class FormLimits:
    """Bounds on everything in a request body that is not the file's bytes.

    ``idle_timeout`` is how many seconds a transfer may pause: a request body between two
    chunks before the request is ended (408), and a download whose client accepts no bytes
    before it is abandoned. It stops a client that sends or reads very slowly from holding a
    connection, a task and an open file indefinitely.

    A client that keeps sending, but a byte now and then, is bounded by two more: a request
    body that has taken ``body_timeout`` seconds in all (None: no bound), or that has come at
    less than ``min_body_rate`` bytes a second once it has taken ``idle_timeout`` seconds
    (0: no bound), ends with 408 too. Only the time spent waiting for the client counts. The
    largest file (`Policy.max_file_size`) must fit in ``body_timeout`` at your slowest
    clients' rate: 512 MiB in the default hour is 146 KiB/s; keep ``body_timeout`` at or below
    ``sweep_stale_after`` of `create_app`, after which an unfinished upload is swept.
    """

    max_fields: int = 64
    max_field_size: int = 64 * 1024
    max_header_size: int = 8 * 1024
    max_headers_per_part: int = 16
    idle_timeout: float = 60.0
    body_timeout: float | None = 3600.0
    min_body_rate: int = 1024


@dataclass(frozen=True)
class Part:
    """The headers of one part: its field ``name``, and ``filename`` for a file part."""

    name: str
    filename: str | None
    content_type: str | None


def boundary_from_content_type(content_type: str | None) -> bytes:
    """The boundary of a ``multipart/form-data`` Content-Type; `MalformedUpload` otherwise."""
    if len(_BOUNDARY_PARAMETER.findall(content_type or "")) > 1:
        raise MalformedUpload("The multipart/form-data Content-Type has more than one boundary.")
    media_type, options = parse_options_header(content_type or "")
    if media_type != b"multipart/form-data":
        raise MalformedUpload(
            "Send the request as multipart/form-data (Content-Type: multipart/form-data; "
            f"boundary=...); got {shown(content_type) if content_type else 'no Content-Type'}."
        )
    boundary = options.get(b"boundary")
    if not boundary:
        raise MalformedUpload("The multipart/form-data Content-Type has no boundary parameter.")
    if len(boundary) > 70:
        raise MalformedUpload("The multipart boundary is longer than 70 characters.")
    return boundary


_Event = tuple[str, object]
_BOUNDARY_PARAMETER = re.compile(r";\s*boundary\s*=", re.IGNORECASE)
_QUOTED_PAIR = re.compile(rb"\\.")


class MultipartReader:
    """Reads the parts of a multipart body in order.

    Call `next_part` to get the next part's headers (None after the closing boundary), then
    consume its content with `iter_data` or `read_text`; content not consumed is skipped.
    ``max_body`` bounds the whole body: past it, `RequestTooLarge` is raised at once, naming
    ``file_limit`` when the form carries a file of at most that size.
    """

    def __init__(
        self,
        body: AsyncIterator[bytes],
        boundary: bytes,
        *,
        max_body: int,
        limits: FormLimits | None = None,
        file_limit: int | None = None,
    ) -> None:
        self._body = body
        self._file_limit = file_limit
        self._limits = limits or FormLimits()
        self._max_body = max_body
        self._received = 0
        self._ended = False
        # The parser's callbacks are methods of `_PartEvents`, not of the reader: the parser
        # holds them, and a reader that held itself through its parser would be a reference
        # cycle, left for the garbage collector at the end of every upload.
        parts = _PartEvents(self._limits)
        self._events = parts.events
        try:
            self._parser = MultipartParser(
                boundary,
                {
                    "on_part_begin": parts.on_part_begin,
                    "on_header_field": parts.on_header_field,
                    "on_header_value": parts.on_header_value,
                    "on_header_end": parts.on_header_end,
                    "on_headers_finished": parts.on_headers_finished,
                    "on_part_data": parts.on_part_data,
                    "on_part_end": parts.on_part_end,
                    "on_end": parts.on_end,
                },
                max_header_count=self._limits.max_headers_per_part,
                max_header_size=self._limits.max_header_size,
            )
        except Exception as exc:
            raise MalformedUpload(f"Invalid multipart boundary: {exc}") from exc

    @property
    def bytes_received(self) -> int:
        """How many bytes of the body have been read so far."""
        return self._received

    async def next_part(self) -> Part | None:
        """The headers of the next part, or None once the closing boundary has been read."""
        while True:
            kind, value = await self._next_event()
            if kind == "part":
                assert isinstance(value, Part)
                return value
            if kind == "end":
                return None

    async def iter_data(self) -> AsyncIterator[bytes]:
        """The current part's content, chunk by chunk, as it arrives."""
        while True:
            kind, value = await self._next_event()
            if kind == "data":
                assert isinstance(value, bytes)
                yield value
            else:
                return

    async def read_text(self, name: str) -> str:
        """The current part's content as UTF-8 text, at most ``max_field_size`` bytes."""
        buffer = bytearray()
        async for chunk in self.iter_data():
            buffer += chunk
            if len(buffer) > self._limits.max_field_size:
                raise MalformedUpload(
                    f"The form field {shown(name)} is longer than "
                    f"{self._limits.max_field_size} bytes.",
                    param=name,
                )
        try:
            return buffer.decode("utf-8")
        except UnicodeDecodeError:
            raise MalformedUpload(
                f"The form field {shown(name)} is not valid UTF-8.", param=name
            ) from None

    async def _next_event(self) -> _Event:
        while not self._events:
            if self._ended:
                return ("end", None)
            await self._feed()
        event = self._events.popleft()
        if event[0] == "end":
            self._ended = True
        return event

    async def _feed(self) -> None:
        try:
            chunk = await anext(self._body)
        except StopAsyncIteration:
            raise MalformedUpload(
                "The multipart body ended before its closing boundary; the upload is incomplete."
            ) from None
        self._received += len(chunk)
        if self._received > self._max_body:
            raise RequestTooLarge(self._max_body, file_limit=self._file_limit)
        try:
            self._parser.write(chunk)
        except MultipartParseError as exc:
            raise MalformedUpload(f"Malformed multipart body: {exc}.") from None


class _PartEvents:
    """python-multipart's callbacks: they turn the parser's events into the reader's
    (``events``), within ``limits``."""

    __slots__ = ("_header_field", "_header_value", "_headers", "_limits", "_parts", "events")

    def __init__(self, limits: FormLimits) -> None:
        self._limits = limits
        self.events: deque[_Event] = deque()
        self._parts = 0
        self._header_field = bytearray()
        self._header_value = bytearray()
        self._headers: dict[bytes, bytes] = {}

    def on_part_begin(self) -> None:
        self._parts += 1
        if self._parts > self._limits.max_fields:
            raise MalformedUpload(
                f"The form has more than {self._limits.max_fields} parts; send only "
                "'file', 'purpose' and the optional 'expires_after' fields."
            )
        self._headers = {}

    def on_header_field(self, data: bytes, start: int, end: int) -> None:
        self._header_field += data[start:end]

    def on_header_value(self, data: bytes, start: int, end: int) -> None:
        self._header_value += data[start:end]

    def on_header_end(self) -> None:
        name = bytes(self._header_field).strip().lower()
        if name in self._headers:  # two Content-Dispositions could disagree on what a part is
            raise MalformedUpload(f"A part repeats its {name.decode('latin-1')!r} header.")
        self._headers[name] = bytes(self._header_value).strip()
        self._header_field.clear()
        self._header_value.clear()

    def on_headers_finished(self) -> None:
        raw = self._headers.get(b"content-disposition", b"")
        if _QUOTED_PAIR.sub(b"", raw).count(b'"') % 2:
            raise MalformedUpload(
                "A part's Content-Disposition has a quoted string that never ends."
            )
        disposition, options = parse_options_header(raw or None)
        if disposition != b"form-data" or not options.get(b"name"):
            raise MalformedUpload(
                "Every part needs a header 'Content-Disposition: form-data; name=\"...\"'."
            )
        content_type = self._headers.get(b"content-type")
        filename = options.get(b"filename")
        try:
            part = Part(
                name=options[b"name"].decode("utf-8"),
                filename=None if filename is None else filename.decode("utf-8"),
                content_type=None if content_type is None else content_type.decode("latin-1"),
            )
        except UnicodeDecodeError:
            raise MalformedUpload("A part's name or filename is not valid UTF-8.") from None
        self.events.append(("part", part))

    def on_part_data(self, data: bytes, start: int, end: int) -> None:
        if start == 0 and end == len(data):
            self.events.append(("data", data))  # the common case: no copy of the chunk
        elif end > start:
            self.events.append(("data", data[start:end]))

    def on_part_end(self) -> None:
        self.events.append(("part_end", None))

    def on_end(self) -> None:
        self.events.append(("end", None))
