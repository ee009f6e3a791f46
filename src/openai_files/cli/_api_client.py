"""A small HTTP client for OpenAI-compatible Files APIs, streaming both ways.

`FilesClient` uploads from disk as it sends (`MultipartBody`, a generator with a known
length), downloads as it writes (`Download`), and resumes downloads with ``Range``. httpx's
exceptions are translated at one seam, `FilesClient._translated`:

```
ClientError            a local failure: unreadable file, unwritable path, unexpected answer
├── APIError           the server answered with an error status (``status``)
└── ConnectionFailed   no answer: refused, unresolvable, timed out, cut off
```
"""

from __future__ import annotations

import json
import mimetypes
import re
import secrets
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, BinaryIO
from urllib.parse import quote

import httpx

__all__ = [
    "APIError",
    "ClientError",
    "Connection",
    "ConnectionFailed",
    "Download",
    "FilesClient",
    "MultipartBody",
]


CHUNK_SIZE = 256 * 1024
TIMEOUT = httpx.Timeout(300.0, connect=10.0)
"""Long reads: a server may check a large upload (JSONL validation, S3 completion) before
answering."""

JSON_HEADERS = {"content-type": "application/json"}
JSONObject = dict[str, Any]
Advance = Callable[[int], None]
"""Told how many more bytes were sent or received."""


class ClientError(Exception):
    """A request that could not be made or answered; the message says why, in one line."""


class APIError(ClientError):
    """The server answered with an error status; ``message`` is its own words."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(f"{message} ({status})")
        self.message = message
        self.status = status


class ConnectionFailed(ClientError):
    """The server could not be reached, or the connection broke before the answer was whole."""


@dataclass(frozen=True)
class Connection:
    """Where the API is and the key to send; the key is kept out of the ``repr``."""

    base_url: str
    api_key: str | None = field(default=None, repr=False)

    @classmethod
    def to(cls, base_url: str, api_key: str | None = None) -> Connection:
        """A checked connection: ``base_url`` must be http(s) (a trailing ``/`` is dropped); an
        empty ``api_key`` means none. Raises `ClientError` for any other URL."""
        if not base_url.startswith(("http://", "https://")):
            raise ClientError(f"the base URL must start with http:// or https://: {base_url!r}")
        return cls(base_url.rstrip("/"), api_key or None)


@dataclass(frozen=True)
class MultipartBody:
    """A ``multipart/form-data`` body: text fields, then one file part read as it is sent.

    Its length is known in advance, so it goes with a Content-Length rather than chunked.
    """

    fields: Mapping[str, str]
    file: BinaryIO
    filename: str
    size: int
    name: str = "file"
    """The file part's field name: ``file`` for ``/files``, ``data`` for an upload's part."""
    boundary: str = field(default_factory=lambda: secrets.token_hex(16))

    @property
    def headers(self) -> dict[str, str]:
        length = len(self._head()) + self.size + len(self._tail())
        return {
            "content-type": f"multipart/form-data; boundary={self.boundary}",
            "content-length": str(length),
        }

    def chunks(self, advance: Advance) -> Iterator[bytes]:
        """The body, calling ``advance`` with each piece of the file once it has been sent."""
        yield self._head()
        remaining = self.size
        while remaining:
            chunk = self.file.read(min(CHUNK_SIZE, remaining))
            if not chunk:
                raise ClientError(f"{self.filename} shrank while it was being sent")
            remaining -= len(chunk)
            yield chunk
            advance(len(chunk))
        yield self._tail()

    def _head(self) -> bytes:
        media_type = mimetypes.guess_type(self.filename)[0] or "application/octet-stream"
        parts = [
            f'--{self.boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'
            for name, value in self.fields.items()
        ]
        parts.append(
            f'--{self.boundary}\r\nContent-Disposition: form-data; name="{self.name}"; '
            f'filename="{_header_quoted(self.filename)}"\r\nContent-Type: {media_type}\r\n\r\n'
        )
        return "".join(parts).encode()

    def _tail(self) -> bytes:
        return f"\r\n--{self.boundary}--\r\n".encode()


def _header_quoted(text: str) -> str:
    """``text`` inside a quoted header parameter, escaped as browsers (and httpx) do."""
    return text.replace('"', "%22").replace("\r", "%0D").replace("\n", "%0A")


@dataclass(frozen=True)
class Download:
    """A content response being read; its bytes begin at ``start`` of the file."""

    response: httpx.Response
    start: int

    def chunks(self) -> Iterator[bytes]:
        """The bytes as they arrive, so that an interrupted download keeps all it received."""
        return self.response.iter_bytes()

    @property
    def etag(self) -> str | None:
        """The server's strong ETag for the content, the only kind ``If-Range`` may carry;
        None when it sent none or a weak one."""
        tag = self.response.headers.get("etag")
        return tag if tag and tag.startswith('"') else None


class FilesClient:
    """The Files calls over one connection pool; every failure is a `ClientError`."""

    def __init__(
        self, connection: Connection, *, transport: httpx.BaseTransport | None = None
    ) -> None:
        key = connection.api_key
        self.connection = connection
        self._http = httpx.Client(
            base_url=connection.base_url + "/",
            headers={"authorization": f"Bearer {key}"} if key else {},
            timeout=TIMEOUT,
            follow_redirects=True,  # a presigned download URL answers with a redirect
            transport=transport,
        )

    def __enter__(self) -> FilesClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._http.close()

    def create(self, body: MultipartBody, advance: Advance = lambda _: None) -> JSONObject:
        return self._json("POST", "files", content=body.chunks(advance), headers=body.headers)

    def create_upload(self, fields: JSONObject) -> JSONObject:
        """``POST /uploads``: an Uploads API upload of ``fields`` (filename, purpose, bytes,
        mime_type)."""
        body = json.dumps(fields).encode()
        return self._json("POST", "uploads", content=iter([body]), headers=JSON_HEADERS)

    def add_part(self, upload_id: str, body: MultipartBody, advance: Advance) -> JSONObject:
        url = f"uploads/{quote(upload_id, safe='')}/parts"
        return self._json("POST", url, content=body.chunks(advance), headers=body.headers)

    def complete_upload(self, upload_id: str, part_ids: list[str]) -> JSONObject:
        url = f"uploads/{quote(upload_id, safe='')}/complete"
        body = json.dumps({"part_ids": part_ids}).encode()
        return self._json("POST", url, content=iter([body]), headers=JSON_HEADERS)

    def list_page(
        self,
        *,
        purpose: str | None = None,
        limit: int | None = None,
        order: str | None = None,
        after: str | None = None,
    ) -> JSONObject:
        query = {"purpose": purpose, "limit": limit, "order": order, "after": after}
        return self._json("GET", "files", params={k: v for k, v in query.items() if v})

    def iter_files(
        self,
        *,
        purpose: str | None = None,
        limit: int | None = None,
        order: str | None = None,
        after: str | None = None,
    ) -> Iterator[JSONObject]:
        """Every file from ``after`` on, page after page until ``has_more`` is false."""
        while True:
            page = self.list_page(purpose=purpose, limit=limit, order=order, after=after)
            files = files_of(page)
            yield from files
            if not page.get("has_more") or not files:
                return
            last = page.get("last_id") or files[-1].get("id")
            if not isinstance(last, str) or last == after:
                raise ClientError("the server's list pages do not advance")
            after = last

    def retrieve(self, file_id: str) -> JSONObject:
        return self._json("GET", f"files/{quote(file_id, safe='')}")

    def delete(self, file_id: str) -> JSONObject:
        return self._json("DELETE", f"files/{quote(file_id, safe='')}")

    @contextmanager
    def content(
        self, file_id: str, offset: int = 0, if_range: str | None = None
    ) -> Iterator[Download]:
        """The file's bytes from ``offset`` on, or from 0 when the server ignores ranges or
        its ETag is no longer ``if_range``."""
        # Identity, so that offsets and sizes count the file's own bytes.
        headers = {"accept-encoding": "identity"}
        if offset:
            headers["range"] = f"bytes={offset}-"
            if if_range:
                headers["if-range"] = if_range
        url = f"files/{quote(file_id, safe='')}/content"
        with self._translated(), self._http.stream("GET", url, headers=headers) as response:
            _raise_for_status(response)
            yield Download(response, _start_of(response, offset))

    def _json(
        self,
        method: str,
        url: str,
        *,
        params: Mapping[str, str | int] | None = None,
        content: Iterator[bytes] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> JSONObject:
        with self._translated():
            response = self._http.request(
                method, url, params=params, content=content, headers=headers
            )
        _raise_for_status(response)
        try:
            answer = response.json()
        except ValueError:
            answer = None
        if not isinstance(answer, dict):
            raise ClientError(f"unexpected answer from {response.url}: not a JSON object")
        return answer

    @contextmanager
    def _translated(self) -> Iterator[None]:
        url = self.connection.base_url
        try:
            yield
        except (httpx.ConnectError, httpx.ConnectTimeout, httpx.UnsupportedProtocol) as exc:
            raise ConnectionFailed(f"cannot reach {url}: {_reason(exc)}") from exc
        except httpx.TransportError as exc:
            raise ConnectionFailed(f"connection to {url} failed: {_reason(exc)}") from exc
        except httpx.InvalidURL as exc:
            raise ClientError(f"invalid URL under {url}: {exc}") from exc


def _reason(exc: Exception) -> str:
    return one_line(str(exc)) or type(exc).__name__


def _raise_for_status(response: httpx.Response) -> None:
    if response.is_success:
        return
    response.read()
    raise APIError(_error_message(response), response.status_code)


def _error_message(response: httpx.Response) -> str:
    """The server's own message: OpenAI's ``{"error": {"message": ...}}``, else its text."""
    try:
        body = response.json()
    except ValueError:
        body = None
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict) and isinstance(error.get("message"), str):
        message: str = error["message"]
    elif isinstance(error, str):
        message = error
    else:
        message = response.text
    return one_line(message)[:500] or response.reason_phrase or "no message"


_CONTENT_RANGE = re.compile(r"bytes\s+(\d+)-\d+/(\d+|\*)")


def _start_of(response: httpx.Response, offset: int) -> int:
    if response.status_code == 200:
        return 0
    if response.status_code != 206:
        raise ClientError(f"unexpected status {response.status_code} for a download")
    found = _CONTENT_RANGE.match(response.headers.get("content-range", ""))
    if found is None or int(found[1]) != offset:
        shown = response.headers.get("content-range")
        raise ClientError(f"asked for bytes from {offset}, the server sent {shown!r}")
    return offset


def files_of(page: JSONObject) -> list[JSONObject]:
    data = page.get("data")
    if not isinstance(data, list) or not all(isinstance(f, dict) for f in data):
        raise ClientError("unexpected answer: a list without a 'data' array of objects")
    return data


def one_line(text: str) -> str:
    """``text`` on one line, whitespace runs as one space, other control characters as ``?``."""
    return printable(" ".join(text.split()))


def printable(text: str) -> str:
    """``text`` with what a terminal would act on (escapes, newlines) replaced by ``?``."""
    return "".join(c if c.isprintable() else "?" for c in text)
