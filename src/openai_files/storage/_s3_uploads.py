"""The `MultipartStorage` methods of `S3Storage`: S3 multipart uploads that stay open across
requests (the Uploads API's), whose numbered parts are sent and completed by `._s3_parts`."""

from __future__ import annotations

from collections.abc import AsyncIterable, Sequence
from secrets import token_hex

from ._s3_errors import unavailable
from ._s3_multipart import MIN_PART_SIZE, S3RequestError
from ._s3_objects import S3Objects
from ._s3_parts import complete_numbered, gapless_parts, numbers_for, put_numbered
from .base import NumberedPut, NumberedSource

__all__ = ["S3Uploads"]


class S3Uploads(S3Objects):
    """The multipart uploads across requests of `S3Storage` (`MultipartStorage`)."""

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
