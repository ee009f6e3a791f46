"""S3's multipart upload API, for what obstore cannot do: assemble an object from others
inside S3 (``UploadPartCopy``) and find incomplete multipart uploads.

obstore (0.12) keeps the upload id of its multipart uploads to itself and has no part copy,
so these requests are made here, over httpx and signed with SigV4 (`._sigv4`), against the
same endpoint, bucket, region and credentials as the storage's obstore client. Objects are
addressed path-style (``endpoint/bucket/name``), as obstore does by default.

Only static credentials can sign here: the storage's own arguments, else
``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY`` (and ``AWS_SESSION_TOKEN``). Where obstore
finds its credentials elsewhere (an instance profile, web identity), `multipart_client`
returns None and the storage does without.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from xml.etree import ElementTree

import anyio
import httpx

from ._s3_config import S3Bucket, env_says_true
from ._sigv4 import Credentials, canonical_query, sign, uri_encode
from .base import chained

__all__ = [
    "MAX_PARTS",
    "MAX_PART_SIZE",
    "MIN_PART_SIZE",
    "IncompleteUpload",
    "PartCopyUnsupported",
    "Piece",
    "S3Multipart",
    "S3RequestError",
    "assemble",
    "multipart_client",
    "plan_copies",
]

_MIB = 1024 * 1024
MIN_PART_SIZE = 5 * _MIB
"""S3 refuses parts smaller than this, except the last one."""
MAX_PART_SIZE = 5 * 1024 * _MIB
MAX_PARTS = 10_000

_XMLNS = "http://s3.amazonaws.com/doc/2006-03-01/"


class S3RequestError(Exception):
    """A request of this module failed. The message holds ``status code: NNN`` and S3's
    error code, as obstore's do, so one translation (`._s3_errors.unavailable`) reads both."""

    def __init__(self, message: str, *, status: int | None = None, code: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.code = code


class PartCopyUnsupported(S3RequestError):
    """The server answered an ``UploadPartCopy`` without the part's ETag: it does not copy
    parts (``rclone serve s3`` takes the request for an ``UploadPart`` of no bytes)."""


@dataclass(frozen=True)
class IncompleteUpload:
    """A multipart upload that was neither completed nor aborted."""

    name: str
    upload_id: str
    initiated: float
    """Unix time."""


def multipart_client(
    bucket: S3Bucket, *, connect_timeout: float, read_timeout: float
) -> S3Multipart | None:
    """A client for ``bucket`` as obstore resolves it (its arguments first, then the AWS_*
    environment variables), or None where it cannot sign (no static credentials) or address
    the bucket path-style (``AWS_VIRTUAL_HOSTED_STYLE_REQUEST``)."""
    env = os.environ
    access_key_id = bucket.access_key_id or env.get("AWS_ACCESS_KEY_ID")
    secret_access_key = bucket.secret_access_key or env.get("AWS_SECRET_ACCESS_KEY")
    if not access_key_id or not secret_access_key:
        return None
    if env_says_true("AWS_VIRTUAL_HOSTED_STYLE_REQUEST"):
        return None
    session_token = bucket.session_token
    if session_token is None and access_key_id == env.get("AWS_ACCESS_KEY_ID"):
        session_token = env.get("AWS_SESSION_TOKEN") or None
    region = bucket.region or env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or "us-east-1"
    endpoint = bucket.endpoint or env.get("AWS_ENDPOINT_URL") or env.get("AWS_ENDPOINT")
    endpoint = endpoint or f"https://s3.{region}.amazonaws.com"
    credentials = Credentials(access_key_id, secret_access_key, session_token)
    timeout = httpx.Timeout(read_timeout, connect=connect_timeout)
    return S3Multipart(endpoint, bucket.name, region, credentials, timeout)


class S3Multipart:
    """The multipart requests of one bucket. Every method raises `S3RequestError` on any
    failure, the network's included."""

    def __init__(
        self,
        endpoint: str,
        bucket: str,
        region: str,
        credentials: Credentials,
        timeout: httpx.Timeout,
    ) -> None:
        base = httpx.URL(endpoint.rstrip("/") + "/")
        self._base = base
        self._host = base.netloc.decode("ascii")
        self._root = base.raw_path.decode("ascii")
        self._bucket = bucket
        self._region = region
        self._credentials = credentials
        self._client = httpx.AsyncClient(timeout=timeout, trust_env=False)

    async def create(self, name: str) -> str:
        """CreateMultipartUpload: the new upload's id."""
        answer = await self._request("POST", name, {"uploads": ""})
        return _text(answer, "UploadId")

    async def copy_part(
        self, name: str, upload_id: str, number: int, source: str, window: tuple[int, int] | None
    ) -> str:
        """UploadPartCopy of the object ``source`` (or of its bytes ``[start, end)``) as part
        ``number``: the part's ETag. `PartCopyUnsupported` where the server does not copy."""
        copied = f"/{uri_encode(self._bucket)}/{uri_encode(source, keep_slash=True)}"
        headers = {"x-amz-copy-source": copied}
        if window is not None:
            headers["x-amz-copy-source-range"] = f"bytes={window[0]}-{window[1] - 1}"
        query = {"partNumber": str(number), "uploadId": upload_id}
        try:
            answer = await self._request("PUT", name, query, headers=headers)
        except S3RequestError as exc:
            if exc.status == 404 and exc.code in {"", "NoSuchKey"}:  # moto sends no body
                raise S3RequestError(str(exc), status=404, code="NoSuchKey") from exc
            raise
        etag = _find(answer, "ETag")
        if etag is None or not etag.strip():
            raise PartCopyUnsupported("the S3 server does not copy parts (UploadPartCopy)")
        return etag.strip()

    async def upload_part(
        self, name: str, upload_id: str, number: int, body: bytes | Sequence[bytes]
    ) -> str:
        """UploadPart of ``body`` (or of its pieces, one after the other, not joined) as part
        ``number``: the part's ETag. The body is sent unhashed (``UNSIGNED-PAYLOAD``)."""
        pieces = [body] if isinstance(body, bytes) else body
        query = {"partNumber": str(number), "uploadId": upload_id}
        headers = {"content-length": str(sum(map(len, pieces)))}
        response = await self._send(
            "PUT", name, query, headers, chained(pieces), unsigned_payload=True
        )
        etag = str(response.headers.get("etag", "")).strip()
        if not etag:
            raise S3RequestError(f"PUT {name}: S3 answered part {number} without an ETag")
        return etag

    async def list_parts(self, name: str, upload_id: str) -> dict[int, tuple[str, int]]:
        """ListParts, every page: each uploaded part's number, with its ETag and size."""
        query = {"uploadId": upload_id}
        parts: dict[int, tuple[str, int]] = {}
        while True:
            answer = await self._request("GET", name, query)
            for part in _all(answer, "Part"):
                number = int(_text(part, "PartNumber"))
                parts[number] = (_text(part, "ETag").strip(), int(_text(part, "Size")))
            if (_find(answer, "IsTruncated") or "").strip().lower() != "true":
                return parts
            query["part-number-marker"] = _text(answer, "NextPartNumberMarker")

    async def complete(
        self, name: str, upload_id: str, etags: Sequence[str] | Mapping[int, str]
    ) -> None:
        """CompleteMultipartUpload of parts 1, 2, ... with these ETags, or of the parts of
        ``etags``' numbers (ascending) with theirs."""
        numbered = etags if isinstance(etags, Mapping) else dict(enumerate(etags, start=1))
        parts = "".join(
            f"<Part><PartNumber>{number}</PartNumber><ETag>{_escape(numbered[number])}</ETag></Part>"
            for number in sorted(numbered)
        )
        body = f'<CompleteMultipartUpload xmlns="{_XMLNS}">{parts}</CompleteMultipartUpload>'
        headers = {"content-type": "application/xml"}
        await self._request("POST", name, {"uploadId": upload_id}, headers, body.encode())

    async def delete(self, name: str) -> None:
        """DeleteObject."""
        await self._request("DELETE", name, {})

    async def abort(self, name: str, upload_id: str) -> None:
        """AbortMultipartUpload; an upload S3 no longer knows is a no-op."""
        try:
            await self._request("DELETE", name, {"uploadId": upload_id})
        except S3RequestError as exc:
            if exc.code != "NoSuchUpload" and exc.status != 404:
                raise

    async def incomplete(self, prefix: str) -> AsyncIterator[IncompleteUpload]:
        """ListMultipartUploads under ``prefix``, every page."""
        query = {"uploads": "", "prefix": prefix}
        while True:
            try:
                answer = await self._request("GET", "", query)
            except S3RequestError as exc:
                if exc.code == "NoSuchUpload":  # rclone, for a bucket that never had one
                    return
                raise
            for upload in _all(answer, "Upload"):
                started = _text(upload, "Initiated").replace("Z", "+00:00")
                yield IncompleteUpload(
                    _text(upload, "Key"),
                    _text(upload, "UploadId"),
                    datetime.fromisoformat(started).timestamp(),
                )
            if (_find(answer, "IsTruncated") or "").strip().lower() != "true":
                return
            query["key-marker"] = _find(answer, "NextKeyMarker") or ""
            query["upload-id-marker"] = _find(answer, "NextUploadIdMarker") or ""

    async def aclose(self) -> None:
        await self._client.aclose()

    async def _request(
        self,
        method: str,
        name: str,
        query: Mapping[str, str],
        headers: Mapping[str, str] | None = None,
        body: bytes = b"",
    ) -> ElementTree.Element | None:
        """Send one signed request; its XML answer (None for an empty one). S3 may answer
        a copy or a completion with 200 and an error in the body: that is a failure too."""
        response = await self._send(method, name, query, headers or {}, body)
        return _parse(response.content)

    async def _send(
        self,
        method: str,
        name: str,
        query: Mapping[str, str],
        headers: Mapping[str, str],
        body: bytes | AsyncIterator[bytes],
        *,
        unsigned_payload: bool = False,
    ) -> httpx.Response:
        """Send one signed request; the response, if it succeeded (see `_request`)."""
        path = f"{self._root}{uri_encode(self._bucket)}/{uri_encode(name, keep_slash=True)}"
        if not name:
            path = path.rstrip("/")
        signed = sign(
            self._credentials,
            region=self._region,
            method=method,
            host=self._host,
            path=path,
            query=query,
            headers=headers,
            body=body if isinstance(body, bytes) else b"",
            unsigned_payload=unsigned_payload,
        )
        target = f"{path}?{canonical_query(query)}" if query else path
        url = self._base.copy_with(raw_path=target.encode("ascii"))
        try:
            response = await self._client.request(method, url, headers=signed, content=body)
        except httpx.HTTPError as exc:
            raise S3RequestError(f"error sending request to S3: {exc!r}") from exc
        try:
            answer = _parse(response.content)
        except S3RequestError:
            if response.is_success:
                raise
            answer = None  # an error without an XML body (moto's, for a missing upload)
        if response.is_success and (answer is None or _local(answer.tag) != "Error"):
            return response
        code = (_find(answer, "Code") or "") if answer is not None else ""
        message = (_find(answer, "Message") or "") if answer is not None else ""
        status = response.status_code
        raise S3RequestError(
            f"{method} {name or '/'}: status code: {status}: {code} {message}".strip(),
            status=response.status_code,
            code=code,
        )


def _parse(content: bytes) -> ElementTree.Element | None:
    # S3 may send blank space before the answer of a long copy or completion.
    content = content.strip()
    if not content:
        return None
    try:
        # The answer comes from the operator's own S3 endpoint; ElementTree resolves no
        # external entity and expat bounds entity expansion.
        return ElementTree.fromstring(content)  # noqa: S314
    except ElementTree.ParseError as exc:
        raise S3RequestError(f"S3 answered with malformed XML: {exc}") from exc


def _local(tag: str) -> str:
    return tag.rpartition("}")[2]


def _all(root: ElementTree.Element | None, name: str) -> list[ElementTree.Element]:
    if root is None:
        return []
    return [element for element in root.iter() if _local(element.tag) == name]


def _find(root: ElementTree.Element | None, name: str) -> str | None:
    found = _all(root, name)
    return (found[0].text or "") if found else None


def _text(root: ElementTree.Element | None, name: str) -> str:
    found = _find(root, name)
    if found is None:
        raise S3RequestError(f"S3's answer has no {name}")
    return found


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


@dataclass(frozen=True)
class Piece:
    """The bytes ``[start, end)`` of the object ``source``, copied as one part."""

    source: str
    start: int
    end: int
    whole: bool
    """The piece is the whole object (the copy names no range)."""


def plan_copies(
    sources: Sequence[str], sizes: Sequence[int], starts: Sequence[int | None] | None = None
) -> list[Piece] | None:
    """The parts that assemble the objects ``sources`` (of these sizes; or, where ``starts``
    gives an offset, their ``size`` bytes from there) in order, or None when S3 cannot: a
    source other than the last (empty ones aside) is smaller than a part may be, there are no
    bytes at all, or more parts than an upload may hold. A source over `MAX_PART_SIZE` is
    copied in even pieces."""
    offsets = starts if starts is not None else [None] * len(sources)
    filled = [
        (source, size, offset)
        for source, size, offset in zip(sources, sizes, offsets, strict=True)
        if size
    ]
    pieces: list[Piece] = []
    for index, (source, size, offset) in enumerate(filled):
        if size < MIN_PART_SIZE and index < len(filled) - 1:
            return None
        count = -(-size // MAX_PART_SIZE)
        step = -(-size // count)
        base = offset or 0
        pieces += [
            Piece(
                source,
                base + start,
                base + min(start + step, size),
                whole=count == 1 and offset is None,
            )
            for start in range(0, size, step)
        ]
    if not pieces or len(pieces) > MAX_PARTS:
        return None
    return pieces


async def assemble(
    client: S3Multipart, name: str, pieces: Sequence[Piece], *, in_flight: int
) -> None:
    """Make the object ``name`` from ``pieces``, in order, inside S3: one multipart upload,
    its parts copied ``in_flight`` at a time, then completed. Atomic: on any error or
    cancellation the upload is aborted (a failure to abort is noted on the error)."""
    upload_id = await client.create(name)
    try:
        etags = [""] * len(pieces)
        limiter = anyio.CapacityLimiter(in_flight)

        async def copy(number: int, piece: Piece) -> None:
            async with limiter:
                window = None if piece.whole else (piece.start, piece.end)
                etags[number] = await client.copy_part(
                    name, upload_id, number + 1, piece.source, window
                )

        try:
            async with anyio.create_task_group() as group:
                for number, piece in enumerate(pieces):
                    group.start_soon(copy, number, piece)
        except BaseExceptionGroup as failures:
            raise _first(failures) from None
        # The commit point: once it has started, it completes or fails, never half-way.
        with anyio.CancelScope(shield=True):
            await client.complete(name, upload_id, etags)
    except BaseException as error:
        with anyio.CancelScope(shield=True):
            try:
                await client.abort(name, upload_id)
            except S3RequestError as exc:
                error.add_note(f"The incomplete S3 upload could not be aborted: {exc}")
        raise


def _first(group: BaseExceptionGroup[BaseException]) -> BaseException:
    """The first failure in ``group`` (the others are the same request's siblings)."""
    first = group.exceptions[0]
    return _first(first) if isinstance(first, BaseExceptionGroup) else first
