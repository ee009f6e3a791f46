"""The base of `S3Storage`: its settings and its two clients (obstore's stores and the signed
multipart requests of `._s3_multipart`), and the requests on one object: put (one PUT, or a
multipart upload through obstore's writer), get (ranged, or sliced here from a server that
ignores ranges), head and delete. Composition is in `._s3_compose`, multipart uploads across
requests in `._s3_uploads`."""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator
from typing import TYPE_CHECKING

import anyio
import obstore

from ..errors import BlobNotFound
from ._s3_config import S3Bucket, env_flag, normalise_prefix, obstore_stores
from ._s3_errors import DRIVER_ERRORS, first_line, range_ignored, unavailable
from ._s3_exit import register_exit_wait
from ._s3_multipart import MAX_PART_SIZE, MIN_PART_SIZE, multipart_client
from .base import ByteCounter, CountedPuts, check_key, join_blocks

if TYPE_CHECKING:
    from obstore import AsyncWritableFile, BytesStream, GetOptions, GetResult

__all__ = ["DEFAULT_PART_SIZE", "S3Objects"]

_MIB = 1024 * 1024
DEFAULT_PART_SIZE = 8 * _MIB
_WRITE_BLOCK = _MIB
"""How many bytes of a put are gathered before they are hashed and handed to the writer."""
_READ_CHUNK_SIZE = 4 * _MIB
"""Each chunk of a download costs a crossing out of obstore's runtime and a pass through the
HTTP stack: through the standalone server, 4 MiB chunks were about 15% faster than 1 MiB ones,
with a fifth less CPU; 8 and 10 MiB ones were no faster."""


class S3Objects(CountedPuts):
    """The settings and clients of `S3Storage` (its docstring describes the arguments), and
    the requests on one object."""

    def __init__(
        self,
        bucket: str,
        *,
        prefix: str = "",
        endpoint: str | None = None,
        region: str | None = None,
        access_key_id: str | None = None,
        secret_access_key: str | None = None,
        session_token: str | None = None,
        allow_http: bool | None = None,
        part_size: int = DEFAULT_PART_SIZE,
        parts_in_flight: int = 2,
        read_chunk_size: int = _READ_CHUNK_SIZE,
        connect_timeout: float = 3.0,
        read_timeout: float = 30.0,
        commit_timeout: float = 300.0,
        timeout: float = 3600.0,
        max_retries: int = 2,
    ) -> None:
        if not bucket:
            raise ValueError("S3Storage needs a bucket name")
        if not MIN_PART_SIZE <= part_size <= MAX_PART_SIZE:
            raise ValueError(
                f"part_size must be between {MIN_PART_SIZE} and {MAX_PART_SIZE} bytes "
                f"(S3's limits), not {part_size}"
            )
        if parts_in_flight < 1:
            raise ValueError(f"parts_in_flight must be at least 1, not {parts_in_flight}")
        if read_chunk_size < 1:
            raise ValueError(f"read_chunk_size must be positive, not {read_chunk_size}")
        self.bucket = bucket
        self.prefix = normalise_prefix(prefix)
        self.endpoint = endpoint
        self.region = region
        self.allow_http = env_flag("AWS_ALLOW_HTTP") if allow_http is None else allow_http
        self.part_size = part_size
        self.parts_in_flight = parts_in_flight
        self.read_chunk_size = read_chunk_size
        where = S3Bucket(bucket, endpoint, region, access_key_id, secret_access_key, session_token)
        self._store, self._writes = obstore_stores(
            where,
            allow_http=self.allow_http,
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
            commit_timeout=commit_timeout,
            timeout=timeout,
            max_retries=max_retries,
        )
        self._multipart = multipart_client(
            where, connect_timeout=connect_timeout, read_timeout=commit_timeout
        )
        self._copies_parts = self._multipart is not None
        register_exit_wait()  # obstore's threads may still be in Python code at exit
        self._numbers_with_gaps: bool | None = None  # the server completes parts 1 and 3

    def object_name(self, key: str) -> str:
        """The S3 object name that holds ``key``; `ValueError` for a malformed key."""
        return self.prefix + check_key(key)

    async def _put(self, key: str, chunks: AsyncIterable[bytes], counter: ByteCounter) -> None:
        """One PUT, or from ``part_size`` bytes on a multipart upload with ``parts_in_flight``
        parts sent at once; a failed or cancelled put aborts its multipart upload."""
        name = self.object_name(key)
        writer = obstore.open_writer_async(
            self._writes,
            name,
            buffer_size=self.part_size,
            max_concurrency=self.parts_in_flight,
        )
        try:
            async for block in join_blocks(chunks, _WRITE_BLOCK):
                counter.update(block)
                await _write(writer, block, key)
        except BaseException as exc:
            await _abort(writer, exc)
            raise
        try:
            # The commit point: once it has started, it completes or fails, never half-way.
            with anyio.CancelScope(shield=True):
                await writer.close()
        except DRIVER_ERRORS as exc:
            raise unavailable(f"storing {key!r}", exc) from exc

    async def get(
        self, key: str, *, start: int = 0, end: int | None = None
    ) -> AsyncIterator[bytes]:
        """A ranged GET (or the whole object, sliced here, from a server that ignores ranges),
        streamed in chunks of at least ``read_chunk_size`` bytes."""
        name = self.object_name(key)
        if start < 0 or (end is not None and end < 0):
            raise ValueError(f"byte offsets must not be negative: start={start}, end={end}")
        if end is not None and end <= start:
            await self.head(key)
            return _nothing()
        if start == 0 and end is None:
            result = await self._get(key, name)
            return self._chunks(key, result.stream(self.read_chunk_size))
        options: GetOptions = {"range": {"offset": start} if end is None else (start, end)}
        try:
            result = await obstore.get_async(self._store, name, options=options)
        except FileNotFoundError:
            raise BlobNotFound(key) from None
        except DRIVER_ERRORS as exc:
            # A range can fail where a whole GET would not: it starts at or past the end of
            # the object (416), or the server answered it with 200 instead of 206.
            if start >= await self.head(key):
                return _nothing()
            if not range_ignored(exc):
                raise unavailable(f"reading {key!r}", exc) from exc
            whole = await self._get(key, name)
            return _window(self._chunks(key, whole.stream(self.read_chunk_size)), start, end)
        return self._chunks(key, result.stream(self.read_chunk_size))

    async def head(self, key: str) -> int:
        """The object's size from a HEAD request; `BlobNotFound` for a missing key."""
        name = self.object_name(key)
        try:
            meta = await obstore.head_async(self._store, name)
        except FileNotFoundError:
            raise BlobNotFound(key) from None
        except DRIVER_ERRORS as exc:
            raise unavailable(f"reading {key!r}", exc) from exc
        return meta["size"]

    async def delete(self, key: str) -> None:
        """One DELETE request; a missing key is a no-op."""
        name = self.object_name(key)
        try:
            await obstore.delete_async(self._store, name)
        except FileNotFoundError:
            return
        except DRIVER_ERRORS as exc:
            raise unavailable(f"deleting {key!r}", exc) from exc

    async def _get(self, key: str, name: str) -> GetResult:
        try:
            return await obstore.get_async(self._store, name)
        except FileNotFoundError:
            raise BlobNotFound(key) from None
        except DRIVER_ERRORS as exc:
            raise unavailable(f"reading {key!r}", exc) from exc

    async def _chunks(self, key: str, stream: BytesStream) -> AsyncIterator[bytes]:
        while True:
            try:
                chunk = await stream.__anext__()
            except StopAsyncIteration:
                return
            except DRIVER_ERRORS as exc:
                raise unavailable(f"reading {key!r}", exc) from exc
            yield chunk


async def _write(writer: AsyncWritableFile, chunk: bytes, key: str) -> None:
    # Dropping a write half-way could lose the id of the multipart upload it was creating,
    # so a write runs to its end and a cancellation lands between writes.
    try:
        with anyio.CancelScope(shield=True):
            await writer.write(chunk)
    except DRIVER_ERRORS as exc:
        raise unavailable(f"storing {key!r}", exc) from exc


async def _abort(writer: AsyncWritableFile, error: BaseException) -> None:
    """Abort the upload behind ``writer``, even while the task is being cancelled.

    obstore offers the abort only as the exit of the writer's context with an exception.
    A failure to abort is recorded on ``error``, which the caller re-raises.
    """
    with anyio.CancelScope(shield=True):
        try:
            await writer.__aexit__(type(error), error, error.__traceback__)
        except DRIVER_ERRORS as exc:
            error.add_note(f"The incomplete S3 upload could not be aborted: {first_line(exc)}")


async def _nothing() -> AsyncIterator[bytes]:
    return
    yield b""  # pragma: no cover - makes this an async generator


async def _window(
    chunks: AsyncIterator[bytes], start: int, end: int | None
) -> AsyncIterator[bytes]:
    """The bytes of ``chunks`` from offset ``start`` up to ``end`` (exclusive)."""
    offset = 0
    async for chunk in chunks:
        low = max(start - offset, 0)
        high = len(chunk) if end is None else min(end - offset, len(chunk))
        offset += len(chunk)
        if low < high:
            yield chunk[low:high]
        if end is not None and offset >= end:
            return
