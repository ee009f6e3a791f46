"""HTTP responses: OpenAI's error shape for the library's errors, streamed file downloads, and
list pages streamed a batch of files at a time."""

from __future__ import annotations

import json
import logging
import math
import re
from collections.abc import AsyncGenerator, AsyncIterator
from urllib.parse import quote

import anyio
from pydantic import BaseModel, ConfigDict
from starlette.responses import JSONResponse, StreamingResponse
from starlette.types import Message, Receive, Scope, Send

from ..errors import (
    AuthenticationFailed,
    BackendUnavailable,
    BlobNotFound,
    Conflict,
    FileNotFound,
    FileTooLarge,
    InvalidRequest,
    OpenAIFilesError,
    QuotaExceeded,
    RateLimited,
    RequestTimeout,
    UploadNotFound,
)
from ..policy import Policy
from ..service import FileContent, ListedBatches

__all__ = [
    "FILE_TOO_LARGE_STATUS_KEY",
    "ErrorBody",
    "ErrorDetail",
    "FileDownloadResponse",
    "FileListResponse",
    "content_disposition",
    "error_response",
    "openai_error",
    "too_large_status",
]

log = logging.getLogger("openai_files")


class ErrorDetail(BaseModel):
    """What went wrong: the message for the client, OpenAI's error ``type``, the request
    parameter at fault and a machine-readable ``code``."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    message: str
    type: str
    param: str | None
    code: str | None


class ErrorBody(BaseModel):
    """OpenAI's error envelope: `{"error": {"message", "type", "param", "code"}}`."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    error: ErrorDetail


# The HTTP status and OpenAI error `type` of each library error (`openai_files.errors`): the one
# place where errors meet HTTP. The first match in this order wins; an error not listed is 500.
_STATUS: tuple[tuple[type[OpenAIFilesError], int, str], ...] = (
    (InvalidRequest, 400, "invalid_request_error"),
    (AuthenticationFailed, 401, "authentication_error"),
    (FileNotFound, 404, "invalid_request_error"),
    (BlobNotFound, 404, "invalid_request_error"),
    (UploadNotFound, 404, "invalid_request_error"),
    (Conflict, 409, "invalid_request_error"),
    (FileTooLarge, 413, "invalid_request_error"),
    (RequestTimeout, 408, "invalid_request_error"),
    (QuotaExceeded, 400, "invalid_request_error"),
    (RateLimited, 429, "rate_limit_error"),
    (BackendUnavailable, 503, "server_error"),
)

MAX_RETRY_AFTER = 60
"""The longest Retry-After sent: every version of the SDKs honours up to 60 seconds."""


def openai_error(
    status: int,
    message: str,
    *,
    type: str,
    param: str | None = None,
    code: str | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    """A JSON response in OpenAI's error envelope."""
    body = ErrorBody(error=ErrorDetail(message=message, type=type, param=param, code=code))
    return JSONResponse(body.model_dump(mode="json"), status_code=status, headers=headers)


FILE_TOO_LARGE_STATUS_KEY = "openai_files.file_too_large_status"
"""The ASGI scope key under which the Files routes leave the status of ``file_too_large`` for
the error handler (`files_routes(file_too_large_status=...)`)."""


def too_large_status(chosen: int | None, policy: Policy) -> int:
    """The status of ``file_too_large`` errors: ``chosen`` (413 or 400), else the deprecated
    `Policy.file_too_large_status` (413 unless set)."""
    status = policy.file_too_large_status if chosen is None else chosen
    if status not in (400, 413):
        raise ValueError(f"file_too_large_status must be 413 or 400, not {status!r}")
    return status


def error_response(exc: OpenAIFilesError, *, file_too_large_status: int = 413) -> JSONResponse:
    """The HTTP form of one of the library's errors, with its status from the table above
    (``file_too_large_status``: 413, or 400 as some platforms answer)."""
    status, kind = 500, "server_error"
    for error_class, error_status, error_type in _STATUS:
        if isinstance(exc, error_class):
            status, kind = error_status, error_type
            break
    if isinstance(exc, FileTooLarge):
        status = file_too_large_status
    headers: dict[str, str] = {}
    if isinstance(exc, Conflict):
        headers["x-should-retry"] = "false"
    # No "Connection: close" on errors answered before the body was read: closing with unread
    # data makes the kernel reset the connection, and clients then see a transport error (and
    # retry) instead of this answer. The server discards the rest of the body itself.
    if isinstance(exc, RateLimited):
        headers["retry-after"] = str(min(MAX_RETRY_AFTER, max(1, math.ceil(exc.retry_after))))
    if isinstance(exc, AuthenticationFailed):
        headers["www-authenticate"] = "Bearer"
    return openai_error(
        status, exc.message, type=kind, param=exc.param, code=exc.code, headers=headers
    )


_UNSAFE_ASCII = re.compile(r'[^\x20-\x7e]|["\\%;]')


def content_disposition(filename: str) -> str:
    """``attachment`` with an ASCII fallback name and the exact name in RFC 5987 form."""
    fallback = _UNSAFE_ASCII.sub("_", filename) or "download"
    return f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{quote(filename, safe='')}"


class _Stalled(Exception):
    """The client accepted none of a download's bytes for the idle timeout."""


class _PatientStreamingResponse(StreamingResponse):
    """A streamed response that waits at most ``idle_timeout`` seconds for its client to accept
    each chunk. A client that stops reading without closing its connection would otherwise
    hold the response and its task for as long as it likes: past the timeout the response is
    abandoned unfinished, which tells the ASGI server to close the connection."""

    idle_timeout: float

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def send_or_give_up(message: Message) -> None:
            with anyio.move_on_after(self.idle_timeout) as waiting:
                await send(message)
            if waiting.cancelled_caught:
                raise _Stalled

        try:
            await super().__call__(scope, receive, send_or_give_up)
        except _Stalled:
            _log_abandoned(scope, self.idle_timeout)


def _log_abandoned(scope: Scope, idle_timeout: float) -> None:
    log.warning(
        "abandoned the answer to %s: the client accepted nothing for %g seconds",
        scope.get("path"),
        idle_timeout,
    )


class FileDownloadResponse(_PatientStreamingResponse):
    """Streams a `FileContent` and closes it however the response ends (even on disconnect, or
    when the client stops reading for ``idle_timeout`` seconds).

    The first chunk is read before the response starts: when it holds the whole body (a small
    file, or a short range), the response is sent in one go, without the task that streaming
    needs to watch for a disconnect; else the body is streamed from that chunk on."""

    def __init__(
        self,
        content: FileContent,
        *,
        headers: dict[str, str],
        status_code: int = 200,
        idle_timeout: float = 60.0,
    ):
        self.file_content = content
        self.idle_timeout = idle_timeout
        super().__init__(
            content.chunks,
            status_code=status_code,
            headers=headers,
            media_type=None,
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        chunks = self.file_content.chunks
        try:
            first = await anext(chunks, None)
            if (0 if first is None else len(first)) == self.file_content.length:
                await self._send_whole(scope, send, first or b"")
                return
            self.body_iterator = rest = _after(first, chunks)
            try:
                await super().__call__(scope, receive, send)
            finally:
                await rest.aclose()
        finally:
            await self.file_content.aclose()

    async def _send_whole(self, scope: Scope, send: Send, body: bytes) -> None:
        start = {
            "type": "http.response.start",
            "status": self.status_code,
            "headers": self.raw_headers,
        }
        with anyio.move_on_after(self.idle_timeout) as waiting:
            await send(start)
            await send({"type": "http.response.body", "body": body})
        if waiting.cancelled_caught:
            _log_abandoned(scope, self.idle_timeout)


async def _after(first: bytes | None, rest: AsyncIterator[bytes]) -> AsyncGenerator[bytes]:
    """``first`` (None: nothing), then the chunks of ``rest``."""
    if first is not None:
        yield first
    async for chunk in rest:
        yield chunk


class FileListResponse(_PatientStreamingResponse):
    """A page of ``GET /files`` written as its batches are read from the store
    (`ListedBatches`): the same JSON as the page sent whole, in memory one batch at a time.

    The first batch has been fetched before the response starts, so most failures are still
    an error status; a store that fails later cuts the response short (the client sees a
    broken connection, and retries).
    """

    def __init__(self, pages: ListedBatches, *, idle_timeout: float = 60.0) -> None:
        self.idle_timeout = idle_timeout
        super().__init__(_file_list_json(pages), media_type="application/json")


def _json(value: object) -> bytes:
    """``value`` as `JSONResponse` writes it."""
    return json.dumps(value, ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode()


async def _file_list_json(pages: ListedBatches) -> AsyncIterator[bytes]:
    """The JSON of a `FileList`, byte for byte, a batch of files at a time."""
    first_id = last_id = None
    yield b'{"object":"list","data":['
    separator = b""
    async for batch in pages.batches:
        if not batch:
            continue
        first_id = first_id or batch[0].id
        last_id = batch[-1].id
        yield separator + b",".join(_json(file.model_dump(mode="json")) for file in batch)
        separator = b","
    tail: dict[str, object] = {"first_id": first_id, "last_id": last_id}
    tail["has_more"] = pages.has_more
    if pages.total is not None:
        tail["total"] = pages.total
    yield b"]," + _json(tail)[1:]
