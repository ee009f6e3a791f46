"""The five Files endpoints: each turns a request into one `FilesService` call and back."""

from __future__ import annotations

import asyncio
import inspect
import json
import re
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from dataclasses import dataclass, field

from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response

from .._checks import check_expires_after
from ..errors import (
    SHOWN_LENGTH,
    AuthenticationFailed,
    InvalidRequest,
    MalformedUpload,
    RateLimited,
    RequestTimeout,
    RequestTooLarge,
    shown,
)
from ..inputs import MAX_IDEMPOTENCY_KEY_LENGTH, MAX_OWNER_LENGTH, unsafe_character
from ..service import FilesService
from ._multipart import FormLimits, MultipartReader, boundary_from_content_type
from ._observer import OWNER_KEY, UPLOADED_BYTES_KEY
from ._ranges import Unsatisfiable, http_date, not_modified, range_applies, requested_range
from ._responses import FileDownloadResponse, FileListResponse, content_disposition, openai_error
from .auth import Authenticator
from .ratelimit import RateLimiter

__all__ = ["FilesEndpoints", "parse_expires_after"]

FORM_OVERHEAD = 1024 * 1024
"""Bytes a form may carry beyond the file itself (fields, headers, boundaries)."""


@dataclass(frozen=True)
class FilesEndpoints:
    """The request handlers, bound to one service, authenticator and set of form limits."""

    service: FilesService
    auth: Authenticator
    form_limits: FormLimits = field(default_factory=FormLimits)
    presigned_downloads: int | None = None
    rate_limiter: RateLimiter | None = None

    async def owner(self, request: Request) -> str:
        """Who is calling, once the rate limiter (if any) has let them through."""
        found = self.auth(request)
        owner = await found if inspect.isawaitable(found) else found
        if not _storable_owner(owner):
            # The authenticator's own mistake, perhaps fed by a client's header: no store can
            # hold or tell apart such an owner, so the caller is nobody.
            raise AuthenticationFailed("The request is not authenticated.")
        request.scope[OWNER_KEY] = owner  # for the access log
        if self.rate_limiter is not None:
            verdict = self.rate_limiter(owner, request)
            wait = await verdict if inspect.isawaitable(verdict) else verdict
            if wait is not None:
                raise RateLimited(wait)
        return owner

    async def collection(self, request: Request) -> Response:
        """``/files``: POST uploads, GET (and HEAD) lists."""
        return await (self.create if request.method == "POST" else self.list)(request)

    async def item(self, request: Request) -> Response:
        """``/files/{file_id}``: DELETE deletes, GET (and HEAD) retrieves."""
        return await (self.delete if request.method == "DELETE" else self.retrieve)(request)

    async def create(self, request: Request) -> Response:
        owner = await self.owner(request)
        idempotency_key = _idempotency_key(request)
        if idempotency_key is not None:
            earlier = await self.service.idempotent_file(owner, idempotency_key)
            if earlier is not None:  # a retry of an upload that succeeded: the body is not read
                return JSONResponse(earlier.model_dump(mode="json"))
        max_body = self.service.policy.max_file_size + FORM_OVERHEAD
        declared = _integer(request.headers.get("content-length", ""))
        file_limit = self.service.policy.max_file_size
        if declared is not None and declared > max_body:
            raise RequestTooLarge(max_body, file_limit=file_limit)
        reader = MultipartReader(
            request_body(request, self.form_limits),
            boundary_from_content_type(request.headers.get("content-type")),
            max_body=max_body,
            limits=self.form_limits,
            file_limit=file_limit,
        )
        fields: dict[str, str] = {}
        async with AsyncExitStack() as stack:
            upload = None
            while (part := await reader.next_part()) is not None:
                if part.name == "file":
                    if upload is not None:
                        raise InvalidRequest("Send exactly one 'file' part.", param="file")
                    if part.filename is None:
                        raise InvalidRequest(
                            "The 'file' field must be a file part with a filename.", param="file"
                        )
                    check_expires_after(parse_expires_after(fields))
                    upload = await stack.enter_async_context(
                        await self.service.begin_upload(
                            owner,
                            filename=part.filename,
                            media_type=part.content_type,
                            purpose=fields.get("purpose"),
                        )
                    )
                    await upload.write(reader.iter_data())
                elif part.name in fields:
                    raise InvalidRequest(
                        f"The field {shown(part.name)} was sent more than once.",
                        param=part.name[:SHOWN_LENGTH],
                    )
                else:
                    fields[part.name] = await reader.read_text(part.name)
            if upload is None:
                raise InvalidRequest("Missing required parameter: 'file'.", param="file")
            purpose = _required(fields, "purpose")
            created = await upload.finish(
                purpose=purpose,
                expires_after=parse_expires_after(fields),
                idempotency_key=idempotency_key,
            )
        request.scope[UPLOADED_BYTES_KEY] = created.bytes
        return JSONResponse(created.model_dump(mode="json"))

    async def list(self, request: Request) -> Response:
        owner = await self.owner(request)
        query = request.query_params
        pages = await self.service.list_in_batches(
            owner,
            purpose=query.get("purpose") or None,
            limit=_int_param(query.get("limit"), "limit"),
            order=query.get("order") or "desc",
            after=query.get("after") or None,
            offset=(
                _int_param(query.get("offset"), "offset")
                if self.service.policy.list_offset
                else None  # as OpenAI: a parameter it does not know is ignored
            ),
        )
        if not pages.single:  # a long page: sent as it is read, in bounded memory
            return FileListResponse(pages, idle_timeout=self.form_limits.idle_timeout)
        return JSONResponse((await pages.page()).model_dump(mode="json"))

    async def retrieve(self, request: Request) -> Response:
        owner = await self.owner(request)
        found = await self.service.retrieve(owner, request.path_params["file_id"])
        return JSONResponse(found.model_dump(mode="json"))

    async def delete(self, request: Request) -> Response:
        owner = await self.owner(request)
        deleted = await self.service.delete(owner, request.path_params["file_id"])
        return JSONResponse(deleted.model_dump(mode="json"))

    async def content(self, request: Request) -> Response:
        """The file's bytes, whole or one range; 304 when the client's copy is current."""
        owner = await self.owner(request)
        file_id = request.path_params["file_id"]
        if self.presigned_downloads and request.method == "GET":
            url = await self.service.download_url(
                owner, file_id, expires_in=self.presigned_downloads
            )
            if url is not None:
                return RedirectResponse(url, status_code=307)
        stat = await self.service.stat(owner, file_id)
        headers = {
            "accept-ranges": "bytes",
            "etag": stat.etag,
            "last-modified": http_date(stat.last_modified),
        }
        asked = request.headers
        if not_modified(
            asked.get("if-none-match"),
            asked.get("if-modified-since"),
            stat.etag,
            stat.last_modified,
        ):
            return Response(status_code=304, headers=headers)
        wanted = None
        if range_applies(asked.get("if-range"), stat.etag, stat.last_modified):
            try:
                wanted = requested_range(asked.get("range"), stat.size)
            except Unsatisfiable:
                return openai_error(
                    416,
                    f"The requested range is not satisfiable: the file has {stat.size} bytes.",
                    type="invalid_request_error",
                    param="Range",
                    code="range_not_satisfiable",
                    headers={**headers, "content-range": f"bytes */{stat.size}"},
                )
        headers["content-type"] = stat.media_type
        headers["content-disposition"] = content_disposition(stat.file.filename)
        start, end = (0, stat.size) if wanted is None else (wanted.start, wanted.end + 1)
        headers["content-length"] = str(end - start)
        if wanted is not None:
            headers["content-range"] = wanted.content_range(stat.size)
        status = 200 if wanted is None else 206
        if request.method == "HEAD":
            return Response(status_code=status, headers=headers)
        content = await self.service.content(owner, file_id, start=start, end=end, stat=stat)
        return FileDownloadResponse(
            content,
            headers=headers,
            status_code=status,
            idle_timeout=self.form_limits.idle_timeout,
        )


class _BodyTimer:
    """Cancels the current task when the client is too slow with the request body: one wait
    lasts ``idle_timeout`` seconds, the waits add up to ``body_timeout`` seconds, or, once they
    add up to ``idle_timeout``, the body has come at less than ``min_body_rate`` bytes a second.

    A cancel scope around every receive costs more per 64 KiB chunk than parsing it; this
    timer costs a clock read and a few attribute writes per chunk and wakes up about once per
    ``idle_timeout`` seconds. Only the time spent waiting for the client counts, not the time
    the server spends storing what it received. (asyncio only, as the rest of the server.)
    """

    def __init__(self, limits: FormLimits) -> None:
        self.limits = limits
        self.timeout: RequestTimeout | None = None
        self._loop = asyncio.get_running_loop()
        self._task = asyncio.current_task()
        self._waiting_since: float | None = None
        self._waited = 0.0
        self._bytes = 0
        self._handle = self._loop.call_later(self._first_check(), self._check)

    def waiting(self) -> None:
        self._waiting_since = self._loop.time()

    def received(self, size: int) -> None:
        if self._waiting_since is not None:
            self._waited += self._loop.time() - self._waiting_since
        self._waiting_since = None
        self._bytes += size

    def close(self) -> None:
        self._handle.cancel()

    def _first_check(self) -> float:
        idle, total = self.limits.idle_timeout, self.limits.body_timeout
        return idle if total is None else min(idle, total)

    def _check(self) -> None:
        now, since, limits = self._loop.time(), self._waiting_since, self.limits
        waited = self._waited + (now - since if since is not None else 0.0)
        if since is not None and self._task is not None:  # only a wait for the client may end
            self.timeout = self._too_slow(now - since, waited)
            if self.timeout is not None:
                self._task.cancel()
                return
        due = (since if since is not None else now) + limits.idle_timeout
        if limits.body_timeout is not None:
            due = min(due, now + max(limits.body_timeout - waited, 0.0) + 0.001)
        self._handle = self._loop.call_at(due, self._check)

    def _too_slow(self, this_wait: float, waited: float) -> RequestTimeout | None:
        limits = self.limits
        if this_wait >= limits.idle_timeout:
            return RequestTimeout(limits.idle_timeout)
        if limits.body_timeout is not None and waited >= limits.body_timeout:
            return RequestTimeout(
                message=f"The request body took more than {limits.body_timeout:g} seconds to "
                "arrive; the upload was abandoned. Send large files in parts with the Uploads API."
            )
        rate = limits.min_body_rate
        if rate and waited >= limits.idle_timeout and self._bytes < rate * waited:
            return RequestTimeout(
                message=f"The request body arrived at less than {rate} bytes per second; the "
                "upload was abandoned. Retry it over a faster connection."
            )
        return None


async def request_body(request: Request, limits: FormLimits) -> AsyncIterator[bytes]:
    """The request body as it arrives, as `Request.stream` reads it but in one generator
    less on the hot path; a client that goes away mid-upload, or is too slow by ``limits``
    (`FormLimits.idle_timeout`, ``body_timeout``, ``min_body_rate``), is its error, not the
    server's (`RequestTimeout`, 408)."""
    timer = _BodyTimer(limits)
    try:
        while True:
            timer.waiting()
            try:
                message = await request.receive()
            except asyncio.CancelledError:
                task = asyncio.current_task()
                if timer.timeout is None or task is None:
                    raise
                task.uncancel()
                raise timer.timeout from None
            body: bytes = message.get("body", b"")
            timer.received(len(body))
            if message["type"] == "http.disconnect":
                raise MalformedUpload("The client disconnected before the upload was complete.")
            if body:
                yield body
            if not message.get("more_body", False):
                return
    finally:
        timer.close()


def _idempotency_key(request: Request) -> str | None:
    """The ``Idempotency-Key`` header: 1 to 255 characters, none of them a control character."""
    key = request.headers.get("idempotency-key")
    if key is None:
        return None
    if not 1 <= len(key) <= MAX_IDEMPOTENCY_KEY_LENGTH or unsafe_character(key) is not None:
        raise InvalidRequest(
            f"The Idempotency-Key header must be 1 to {MAX_IDEMPOTENCY_KEY_LENGTH} characters "
            "long, without control characters; a UUID is a good key.",
            param="Idempotency-Key",
        )
    return key


def _required(fields: dict[str, str], name: str) -> str:
    value = fields.get(name)
    if not value:
        raise InvalidRequest(f"Missing required parameter: {name!r}.", param=name)
    return value


_INTEGER = re.compile(r"-?[0-9]{1,18}")


def _integer(text: str) -> int | None:
    """``text`` as a plain decimal integer, or None.

    Stricter than `int`, which also takes underscores and non-ASCII digits, and fails with
    ValueError on some strings that pass `str.isdigit` (``"²"``) or on very long ones.
    """
    value = text.strip()
    return int(value) if _INTEGER.fullmatch(value) else None


def _int_param(value: str | None, name: str) -> int | None:
    if value is None or value == "":
        return None
    number = _integer(value)
    if number is None:
        message = f"{name} must be an integer; got {shown(value)}."
        raise InvalidRequest(message, param=name)
    return number


def parse_expires_after(fields: dict[str, str]) -> int | None:
    """Seconds from ``expires_after[anchor]``/``expires_after[seconds]`` or an ``expires_after``
    JSON string; None when absent. The anchor must be ``created_at``."""
    if "expires_after" in fields:
        try:
            value = json.loads(fields["expires_after"])
        except (ValueError, RecursionError):
            # Not JSON, an integer too long to convert, or nesting too deep to decode.
            value = None
        if not isinstance(value, dict):
            raise InvalidRequest(
                'expires_after must be a JSON object like {"anchor": "created_at", '
                '"seconds": 86400}, or sent as expires_after[anchor] and expires_after[seconds].',
                param="expires_after",
            )
        anchor, seconds = value.get("anchor"), value.get("seconds")
    elif "expires_after[anchor]" in fields or "expires_after[seconds]" in fields:
        anchor, seconds = fields.get("expires_after[anchor]"), fields.get("expires_after[seconds]")
    else:
        return None
    if anchor != "created_at":
        raise InvalidRequest(
            f"expires_after[anchor] must be 'created_at'; got {shown(anchor)}.",
            param="expires_after[anchor]",
        )
    return _expiry_seconds(seconds)


def _expiry_seconds(sent: object) -> int:
    seconds = _integer(sent) if isinstance(sent, str) else sent
    if isinstance(seconds, bool) or not isinstance(seconds, int):
        raise InvalidRequest(
            f"expires_after[seconds] must be an integer number of seconds; got {shown(sent)}.",
            param="expires_after[seconds]",
        )
    return seconds


def _storable_owner(owner: object) -> bool:
    """An owner every store holds and compares exactly: 1 to `MAX_OWNER_LENGTH` characters,
    none of them a control, bidi control or lone surrogate."""
    return (
        isinstance(owner, str)
        and 0 < len(owner) <= MAX_OWNER_LENGTH
        and unsafe_character(owner) is None
    )
