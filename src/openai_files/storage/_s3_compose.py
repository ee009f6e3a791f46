"""`S3Storage.compose`: the sources copied inside S3 into one multipart upload where S3 can
(``UploadPartCopy``, planned and sent by `._s3_multipart`), else streamed through once into a
put; and the sizes of whole objects among the sources, measured a few HEAD requests at once."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence

import anyio

from ..errors import BlobNotFound
from ._s3_errors import unavailable
from ._s3_multipart import PartCopyUnsupported, S3RequestError, assemble, plan_copies
from ._s3_objects import S3Objects
from .base import ObjectRange, UnfinishedRange

__all__ = ["S3Compose"]

_ASSEMBLY_CHUNK = 256 * 1024
"""Chunk size of the sources that `S3Storage.compose` streams through (when S3 cannot copy
them). obstore allocates each chunk on its own threads, each with its own malloc arena: piping
four 64 MiB objects into a put in 4 MiB chunks grew a process by 63 to 76 MiB of scattered
heap, in 256 KiB chunks (joined into the put's 1 MiB blocks, as a POST's are) by 12."""
_COPIES_IN_FLIGHT = 8
"""Parts `S3Storage.compose` has S3 copy at once."""
_HEADS_IN_FLIGHT = 16


class S3Compose(S3Objects):
    """The composition of `S3Storage` (`ComposableStorage`)."""

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


def _object_range(source: str | ObjectRange | UnfinishedRange) -> ObjectRange:
    """``source`` as a range; a whole object's with an ``end`` of -1 (not measured yet)."""
    if isinstance(source, str):
        return ObjectRange(source, 0, -1)
    if isinstance(source, ObjectRange):
        return source
    raise TypeError("S3Storage has no unfinished objects: compose takes keys and ranges only")
