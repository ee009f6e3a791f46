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
- A process that made one waits at exit until obstore's threads have left Python code
  (`._s3_exit`): on Python before 3.14, one caught by the interpreter's finalization aborts the
  process.

Every failure of the S3 service, of the network or of the credentials surfaces as
`BackendUnavailable`, with the driver's exception chained as its ``__cause__`` for the logs.

The class is put together from private modules, one concern each: its settings, clients and
the requests on one object (``_s3_objects``), composition (``_s3_compose``) and multipart
uploads across requests (``_s3_uploads``), over the signed multipart requests
(``_s3_multipart``) and the numbered parts (``_s3_parts``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta

import obstore

from ._s3_compose import S3Compose
from ._s3_config import url_arguments
from ._s3_errors import DRIVER_ERRORS, unavailable
from ._s3_multipart import MAX_PART_SIZE, MIN_PART_SIZE, S3RequestError
from ._s3_objects import DEFAULT_PART_SIZE
from ._s3_uploads import S3Uploads

__all__ = ["DEFAULT_PART_SIZE", "MAX_PART_SIZE", "MIN_PART_SIZE", "S3Storage"]

_MAX_PRESIGN_SECONDS = 7 * 24 * 3600
"""SigV4 presigned URLs are valid for at most seven days."""


class S3Storage(S3Compose, S3Uploads):
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
