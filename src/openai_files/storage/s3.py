"""`S3Storage`: objects in an S3 bucket (Amazon S3 or any S3-compatible server), via obstore,
and S3's multipart API signed here for what obstore cannot do (`._s3_multipart`).

Needs the ``[s3]`` extra. Each key is stored as the object ``prefix + key``.

How the `Storage` contract is kept, and where S3 makes it bend:

- **put** streams. Below ``part_size`` bytes the object goes up in one PUT; from ``part_size``
  on, as a multipart upload with ``parts_in_flight`` parts (2) on their way at once while the
  next one fills, so memory stays near ``parts_in_flight + 1`` parts whatever the object's
  size. With one part in flight, receiving the body and sending a part take turns (obstore
  takes no more bytes meanwhile): uploads through the server were 20% slower. Incoming chunks
  are joined into 1 MiB blocks, each hashed and handed to obstore in one call: every call
  crosses into obstore's runtime and back, which per 64 KiB network chunk cost a quarter of
  the server's CPU. On any error (from ``chunks``, from S3, or cancellation) the multipart
  upload is aborted, so no object and no incomplete upload is left. Two cases cannot be
  cleaned up from here: the process dying mid-upload, and a failure of the final
  CompleteMultipartUpload request itself (obstore does not expose the upload id). The orphan
  sweep's `remove_partials` aborts such uploads once a day old; where it cannot (no static
  credentials), give the bucket a lifecycle rule that does.
- **compose** has S3 copy the sources into one multipart upload (``UploadPartCopy``), so no
  byte passes through this process; where S3 cannot (a source but the last under 5 MiB, no
  static credentials, a server that does not copy parts), the sources stream through once.
- **Multipart uploads across requests** (`MultipartStorage`, for the Uploads API): each part
  of an upload is cut into parts of ``part_size`` bytes (the last up to 5 MiB larger) and sent
  into one S3 multipart upload as it arrives, ``parts_in_flight`` at once; completing it makes
  the object without a byte passing through again, and without S3 copying any. Needs static
  credentials, as compose's copies do; without them the storage has no multipart uploads
  (`start_multipart` answers None) and the Uploads API stores each part as an object.
- **Cancellation** takes effect between network requests: a part upload or the final commit
  in flight is finished (within the client timeouts) before the upload is aborted, because
  dropping obstore's request half-way could orphan an upload. If the commit completed, the
  put returns normally and the cancellation is delivered at the caller's next checkpoint.
- **get** fails with `BlobNotFound` before streaming (its first request is made eagerly).
  A server that answers a ranged GET with ``200 OK`` instead of ``206 Partial Content``
  (``rclone serve s3`` does) is read from the start and the bytes before ``start`` are skipped.
- A missing bucket looks like a missing key to ``head`` and ``get`` (S3 answers a HEAD with a
  bare 404); ``put`` reports it as `BackendUnavailable`.
- obstore's futures run on asyncio, so this backend needs anyio's asyncio backend (not trio).

Every failure of the S3 service, of the network or of the credentials surfaces as
`BackendUnavailable`, with the driver's exception chained as its ``__cause__`` for the logs.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator, Sequence
from datetime import timedelta
from secrets import token_hex
from typing import TYPE_CHECKING

import anyio
import obstore

from ..errors import BlobNotFound
from ._s3_config import env_flag, normalise_prefix, obstore_stores, url_arguments
from ._s3_errors import DRIVER_ERRORS, first_line, range_ignored, unavailable
from ._s3_multipart import (
    MAX_PART_SIZE,
    MIN_PART_SIZE,
    PartCopyUnsupported,
    S3RequestError,
    assemble,
    multipart_client,
    plan_copies,
)
from ._s3_parts import complete_numbered, gapless_parts, numbers_for, put_numbered
from .base import (
    ByteCounter,
    CountedPuts,
    NumberedPut,
    NumberedSource,
    ObjectRange,
    UnfinishedRange,
    check_key,
    join_blocks,
)

if TYPE_CHECKING:
    from obstore import AsyncWritableFile, BytesStream, GetOptions, GetResult

__all__ = ["DEFAULT_PART_SIZE", "MAX_PART_SIZE", "MIN_PART_SIZE", "S3Storage"]

_MIB = 1024 * 1024
DEFAULT_PART_SIZE = 8 * _MIB
_WRITE_BLOCK = _MIB
"""How many bytes of a put are gathered before they are hashed and handed to the writer."""
_READ_CHUNK_SIZE = 4 * _MIB
"""Each chunk of a download costs a crossing out of obstore's runtime and a pass through the
HTTP stack: through the standalone server, 4 MiB chunks were about 15% faster than 1 MiB ones,
with a fifth less CPU; 8 and 10 MiB ones were no faster."""
_ASSEMBLY_CHUNK = 256 * 1024
"""Chunk size of the sources that `S3Storage.compose` streams through (when S3 cannot copy
them). obstore allocates each chunk on its own threads, each with its own malloc arena: piping
four 64 MiB objects into a put in 4 MiB chunks grew a process by 63 to 76 MiB of scattered
heap, in 256 KiB chunks (joined into the put's 1 MiB blocks, as a POST's are) by 12."""
_COPIES_IN_FLIGHT = 8
"""Parts `S3Storage.compose` has S3 copy at once."""
_HEADS_IN_FLIGHT = 16
_MAX_PRESIGN_SECONDS = 7 * 24 * 3600
"""SigV4 presigned URLs are valid for at most seven days."""


class S3Storage(CountedPuts):
    """Objects in ``bucket`` under ``prefix``, through obstore's `S3Store`.

    Arguments left as None come from the standard AWS environment variables, as obstore reads
    them (``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``, ``AWS_SESSION_TOKEN``,
    ``AWS_REGION``/``AWS_DEFAULT_REGION``, ``AWS_ENDPOINT_URL``...), and ``allow_http`` from
    ``AWS_ALLOW_HTTP``. The requests obstore does not make (part copies for `compose`,
    incomplete uploads for `remove_partials`) are signed here, which needs static credentials:
    the arguments, else ``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY``; credentials that
    only obstore resolves (an instance profile, web identity) leave those two without them.

    ``part_size`` (at least 5 MiB) is both the size from which a put becomes a multipart upload
    and the size of its parts; an object can have at most 10,000 parts. ``parts_in_flight`` (2)
    parts of a put are sent at once, so a put in progress holds up to ``(parts_in_flight + 1) *
    part_size`` bytes. ``read_chunk_size`` (4 MiB) is the least a downloaded chunk holds (except
    the last): memory per download in progress.

    Timeouts are in seconds. ``connect_timeout`` and ``max_retries`` (and no retry starts more
    than 15 seconds after the first attempt) are low, so an unreachable endpoint fails within
    seconds. ``read_timeout`` catches a stalled connection. A put's requests may wait
    ``commit_timeout`` instead for the first byte of an answer: the request that completes a
    multipart upload answers only once the service has assembled the object, which for a large
    one can take minutes (S3 sends blank space meanwhile; servers that do not, moto for one,
    were seen to take 32 s for 2 GiB). ``timeout`` bounds one whole request, which for `get`
    includes streaming the response to the consumer: it must exceed the longest download to
    the slowest client.
    """

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
        self._store, self._writes = obstore_stores(
            bucket,
            endpoint=endpoint,
            region=region,
            access_key_id=access_key_id,
            secret_access_key=secret_access_key,
            session_token=session_token,
            allow_http=self.allow_http,
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
            commit_timeout=commit_timeout,
            timeout=timeout,
            max_retries=max_retries,
        )
        self._multipart = multipart_client(
            bucket,
            endpoint=endpoint,
            region=region,
            access_key_id=access_key_id,
            secret_access_key=secret_access_key,
            session_token=session_token,
            connect_timeout=connect_timeout,
            read_timeout=commit_timeout,
        )
        self._copies_parts = self._multipart is not None
        self._numbers_with_gaps: bool | None = None  # the server completes parts 1 and 3

    @classmethod
    def from_url(cls, url: str) -> S3Storage:
        """Storage for ``s3://bucket/prefix?endpoint=...&region=...&allow_http=true``.

        The query may also set ``part_size`` (bytes) and ``parts_in_flight``. Whatever the URL
        leaves out comes from the environment, as for the constructor; credentials never go in
        the URL.
        """
        bucket, arguments = url_arguments(url)
        return cls(bucket, **arguments)

    def __repr__(self) -> str:
        where = f", endpoint={self.endpoint!r}" if self.endpoint else ""
        return f"S3Storage(bucket={self.bucket!r}, prefix={self.prefix!r}{where})"

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

    async def presigned_url(self, key: str, *, expires_in: int) -> str:
        """A GET URL for ``key`` signed with the storage's credentials, valid ``expires_in``
        seconds (1 to 604800). Signing is local: it neither checks that the object exists nor
        that the credentials are valid."""
        name = self.object_name(key)
        if not 0 < expires_in <= _MAX_PRESIGN_SECONDS:
            raise ValueError(
                f"expires_in must be between 1 and {_MAX_PRESIGN_SECONDS} seconds, not {expires_in}"
            )
        try:
            return await obstore.sign_async(self._store, "GET", name, timedelta(seconds=expires_in))
        except DRIVER_ERRORS as exc:
            raise unavailable(f"signing a URL for {key!r}", exc) from exc

    async def iter_keys(self, *, modified_before: float) -> AsyncIterator[str]:
        """Every key under the prefix whose object was last written before that time."""
        try:
            async for batch in obstore.list(self._store, self.prefix or None, chunk_size=500):
                for meta in batch:
                    if meta["last_modified"].timestamp() < modified_before:
                        yield meta["path"].removeprefix(self.prefix)
        except DRIVER_ERRORS as exc:
            raise unavailable("listing objects", exc) from exc

    async def compose(
        self, key: str, sources: Sequence[str | ObjectRange | UnfinishedRange]
    ) -> int:
        """Assemble the sources inside S3 where it can: one multipart upload whose parts are
        copies of the sources (``UploadPartCopy``, of a range for an `ObjectRange`), so no
        byte passes through this process. That needs every source but the last to be at least
        5 MiB (S3's smallest part), static credentials (see `S3Storage`) and a server that
        copies parts (``rclone serve s3`` does not); otherwise the sources stream through
        once, into a `put`. Atomic as `put` is."""
        name = self.object_name(key)
        ranges = [_object_range(source) for source in sources]
        whole = [source.end < 0 for source in ranges]
        measured = iter(await self._sizes([r.key for r in ranges if r.end < 0]))
        ranges = [ObjectRange(r.key, 0, next(measured)) if r.end < 0 else r for r in ranges]
        names = [self.object_name(source.key) for source in ranges]
        sizes = [source.end - source.start for source in ranges]
        starts = [None if entire else r.start for r, entire in zip(ranges, whole, strict=True)]
        pieces = plan_copies(names, sizes, starts)
        if pieces is not None and self._multipart is not None and self._copies_parts:
            try:
                await assemble(self._multipart, name, pieces, in_flight=_COPIES_IN_FLIGHT)
                return sum(sizes)
            except PartCopyUnsupported:
                self._copies_parts = False  # for good: this server never will
            except S3RequestError as exc:
                if exc.code == "NoSuchKey":  # a source went since it was measured
                    raise BlobNotFound(key) from None
                raise unavailable(f"composing {key!r}", exc) from exc
        return await self.put_unhashed(key, self._concatenation(ranges))  # the size is the answer

    min_part_size = MIN_PART_SIZE

    def numbers_for(self, size: int) -> int:
        """The most part numbers `put_numbered` uses for at most ``size`` bytes."""
        return numbers_for(size, self.part_size)

    async def start_multipart(self, key: str) -> str | None:
        """CreateMultipartUpload of ``key``; None without static credentials, or from a
        server that completes only parts numbered 1, 2, 3... without gaps (``rclone serve
        s3``): the first call finds out (`gapless_parts`)."""
        name = self.object_name(key)
        if self._multipart is None:
            return None
        try:
            if self._numbers_with_gaps is None:
                self._numbers_with_gaps = not await gapless_parts(
                    self._multipart, self.object_name(f"uploads/probe-{token_hex(8)}")
                )
            if not self._numbers_with_gaps:
                return None
            return await self._multipart.create(name)
        except S3RequestError as exc:
            raise unavailable(f"starting a multipart upload of {key!r}", exc) from exc

    async def put_numbered(
        self,
        key: str,
        upload_id: str,
        chunks: AsyncIterable[bytes],
        *,
        first: int,
        count: int,
        small_key: str,
    ) -> NumberedPut:
        """Parts of ``part_size`` bytes (the last up to 5 MiB more), ``parts_in_flight`` on
        their way at once: memory stays near ``(parts_in_flight + 2) * part_size + 5 MiB``."""
        name = self.object_name(key)
        if self._multipart is None:
            raise unavailable(f"storing a part of {key!r}", S3RequestError("no static credentials"))
        try:
            return await put_numbered(
                self._multipart,
                name,
                upload_id,
                chunks,
                first=first,
                count=count,
                piece=self.part_size,
                in_flight=self.parts_in_flight,
                put_small=lambda small: self.put(small_key, small),
            )
        except S3RequestError as exc:
            raise unavailable(f"storing a part of {key!r}", exc) from exc

    async def complete_multipart(
        self, key: str, upload_id: str, sources: Sequence[NumberedSource]
    ) -> int:
        """ListParts for the ETags, then CompleteMultipartUpload (objects named by sources
        are read and sent as their parts first)."""
        name = self.object_name(key)
        if self._multipart is None:
            return await self.head(key)
        try:
            return await complete_numbered(
                self._multipart,
                name,
                upload_id,
                sources,
                read_small=self._read_small,
                size_of=lambda: self.head(key),
            )
        except S3RequestError as exc:
            raise unavailable(f"completing {key!r}", exc) from exc

    async def abort_multipart(self, key: str, upload_id: str) -> None:
        """AbortMultipartUpload."""
        name = self.object_name(key)
        if self._multipart is None:
            return
        try:
            await self._multipart.abort(name, upload_id)
        except S3RequestError as exc:
            raise unavailable(f"aborting the multipart upload of {key!r}", exc) from exc

    async def _read_small(self, key: str) -> bytes:
        """The whole object ``key``, which is small (under 5 MiB: a part's worth)."""
        result = await self._get(key, self.object_name(key))
        return b"".join([bytes(chunk) async for chunk in self._chunks(key, result.stream())])

    async def remove_partials(self, *, modified_before: float) -> int:
        """Abort the incomplete multipart uploads under the prefix started before that time
        (puts and compositions whose process died); how many. 0 where this storage cannot sign
        its own requests (see `S3Storage`): a bucket lifecycle rule that aborts them removes
        them instead."""
        client = self._multipart
        if client is None:
            return 0
        removed = 0
        try:
            async for upload in client.incomplete(self.prefix):
                if upload.initiated < modified_before:
                    await client.abort(upload.name, upload.upload_id)
                    removed += 1
        except S3RequestError as exc:
            raise unavailable("removing incomplete multipart uploads", exc) from exc
        return removed

    async def aclose(self) -> None:
        """Close the connections of the multipart requests; obstore's pooled connections are
        released with the store itself."""
        if self._multipart is not None:
            await self._multipart.aclose()

    async def _sizes(self, keys: list[str]) -> list[int]:
        """The sizes of the objects ``keys``, a few HEAD requests at once."""
        sizes = [0] * len(keys)
        limiter = anyio.CapacityLimiter(_HEADS_IN_FLIGHT)

        async def measure(index: int, key: str) -> None:
            async with limiter:
                sizes[index] = await self.head(key)

        try:
            async with anyio.create_task_group() as group:
                for index, key in enumerate(keys):
                    group.start_soon(measure, index, key)
        except BaseExceptionGroup as failures:
            raise failures.exceptions[0] from None
        return sizes

    async def _concatenation(self, ranges: list[ObjectRange]) -> AsyncIterator[bytes]:
        for source in ranges:
            key = source.key
            if source.start == 0 and source.end == await self.head(key):
                result = await self._get(key, self.object_name(key))
                chunks = self._chunks(key, result.stream(_ASSEMBLY_CHUNK))
            else:
                chunks = await self.get(key, start=source.start, end=source.end)
            async for chunk in chunks:
                yield chunk

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


def _object_range(source: str | ObjectRange | UnfinishedRange) -> ObjectRange:
    """``source`` as a range; a whole object's with an ``end`` of -1 (not measured yet)."""
    if isinstance(source, str):
        return ObjectRange(source, 0, -1)
    if isinstance(source, ObjectRange):
        return source
    raise TypeError("S3Storage has no unfinished objects: compose takes keys and ranges only")


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
