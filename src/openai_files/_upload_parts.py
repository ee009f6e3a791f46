"""One part of an upload (Uploads API) on its way to storage: the limits it must fit, its
bytes reserved against the owner's byte quota as they arrive, and where its bytes go.

Where the storage can append (`AppendableStorage`), a part that continues the upload's bytes
(it starts where the bytes of the recorded parts end, and no other part is being appended) is
appended to the upload's one unfinished object, ``uploads/<upload id>/appended``, and its
record's storage key names its place there, ``uploads/<upload id>/appended.<offset>`` (a
*segment*; the key itself holds no object). Any other part is stored under a key of its own.
When the parts named at completion are that object's segments in order from its first byte,
the object is sealed into the file and no byte is copied.

Where the storage has multipart uploads that stay open across requests (`MultipartStorage`:
S3), a part goes into the upload's one multipart upload instead (`._upload_multipart`).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable

from ._core import Core
from ._pending_upload import QUOTA_STEP
from ._upload_multipart import numbered, store_numbered
from .errors import FileTooLarge, InvalidRequest, QuotaExceeded
from .metadata.base import PartRecord, UploadRecord
from .storage.base import (
    AppendableStorage,
    MultipartStorage,
    Storage,
    StoredBlob,
    UnfinishedRange,
)

__all__ = [
    "PartMeter",
    "part_too_large",
    "read_part",
    "remove_part_bytes",
    "sealable",
    "segment_of",
    "sources",
    "store_part",
    "too_many_parts",
]

APPENDED = "appended"
"""The name of an upload's unfinished object under ``uploads/<upload id>/``."""

log = logging.getLogger("openai_files")


class PartMeter:
    """Counts one part's bytes as they stream to storage: refuses the part as soon as it
    passes ``limit``, and under a byte quota reserves its bytes against the owner's quota
    (`MetadataStore.reserve_upload`, `QUOTA_STEP` at a time when the quota allows, else
    exactly) before each chunk goes on to storage. ``still_pending`` raises the error that
    says why the upload no longer takes parts, if it does not."""

    def __init__(
        self,
        core: Core,
        upload: UploadRecord,
        limit: int,
        *,
        still_pending: Callable[[], Awaitable[None]],
    ) -> None:
        self._core = core
        self._still_pending = still_pending
        self._upload = upload
        self._limit = limit
        quota = self._core.policy.quota
        self._quota = quota if quota is not None and quota.max_bytes is not None else None
        self.reserved = 0

    async def metered(self, chunks: AsyncIterable[bytes]) -> AsyncIterator[bytes]:
        total = 0
        async for chunk in chunks:
            total += len(chunk)
            if total > self._limit:
                policy = self._core.policy
                raise part_too_large(self._upload, total, policy.max_part_size)
            if self._quota is not None and total > self.reserved:
                await self._reserve(total)
            yield chunk

    async def _reserve(self, total: int) -> None:
        upload, quota, metadata = self._upload, self._quota, self._core.metadata
        assert quota is not None
        needed = total - self.reserved
        ahead = min(max(needed, QUOTA_STEP), self._limit - self.reserved)
        for size in dict.fromkeys((ahead, needed)):
            if await metadata.reserve_upload(upload.owner, upload.id, size, quota=quota):
                self.reserved += size
                return
        # Refused: the upload closed meanwhile (that error), or the quota is full.
        await self._still_pending()
        usage = await metadata.usage(upload.owner)
        raise QuotaExceeded.for_usage(quota.max_files, quota.max_bytes, usage.files)

    async def release(self) -> None:
        """Give back what this part reserved (it was not added)."""
        if not self.reserved:
            return
        try:
            await self._core.metadata.release_upload(
                self._upload.owner, self._upload.id, self.reserved
            )
        except Exception:  # counted until the upload closes, which settles it
            log.warning("releasing the reservation of a part of %s failed", self._upload.id)
        self.reserved = 0


def too_many_parts(upload_id: str, max_parts: int) -> InvalidRequest:
    return InvalidRequest(
        f"Upload {upload_id} holds {max_parts} parts, the most one upload may hold. Complete "
        "it, or cancel it and upload the file again in fewer, larger parts.",
        param="data",
    )


def part_too_large(upload: UploadRecord, size: int, max_part_size: int) -> FileTooLarge:
    """The error for a part of at least ``size`` bytes that does not fit (the declared bytes
    or the part size limit)."""
    room = upload.bytes - upload.received
    limit = min(room, max_part_size)
    if size <= max_part_size and room < size:
        message = (
            f"The part does not fit in upload {upload.id}: it declared {upload.bytes} bytes "
            f"and its parts hold {upload.received}, so a part may add at most {max(room, 0)} "
            "more. Send a smaller part, or complete the upload if it has all its bytes."
        )
    else:
        message = (
            f"The part is too large: a part holds at most {limit} bytes here (parts are at "
            f"most {max_part_size} bytes). Split the data into smaller parts."
        )
    return FileTooLarge(max(limit, 0), param="data", message=message)


def segment_of(part: PartRecord) -> UnfinishedRange | None:
    """The segment that holds ``part``, or None for a part stored under a key of its own."""
    folder, _, name = part.storage_key.rpartition("/")
    base, _, offset = name.partition(".")
    if base != APPENDED or not offset.isdigit():
        return None
    start = int(offset)
    return UnfinishedRange(f"{folder}/{APPENDED}", start, start + part.bytes)


async def store_part(
    core: Core, upload: UploadRecord, part_id: str, chunks: AsyncIterable[bytes]
) -> tuple[str, StoredBlob]:
    """Store one part's bytes; return the storage key its record names, and what was stored.
    Appended to the upload's unfinished object when the storage allows it, sent into the
    upload's multipart upload where the storage has them, else under
    ``uploads/<upload id>/<part id>``."""
    storage, folder = core.storage, f"uploads/{upload.id}"
    if isinstance(storage, MultipartStorage):
        stored = await store_numbered(core, storage, upload, part_id, chunks)
        if stored is not None:
            return stored
    if isinstance(storage, AppendableStorage):
        offset = upload.received
        blob = await storage.append(f"{folder}/{APPENDED}", chunks, offset=offset)
        if blob is not None:
            return f"{folder}/{APPENDED}.{offset}", blob
    key = f"{folder}/{part_id}"
    return key, await storage.put(key, chunks)


async def remove_part_bytes(storage: Storage, part: PartRecord, *, whole_upload: bool) -> None:
    """Remove a part's bytes. An appended part's are cut off the unfinished object if they
    are its last ones; with ``whole_upload`` (every part goes) the object is removed. A part
    in a multipart upload has no bytes of its own: they go with the upload's multipart
    upload (`._upload_multipart.close_multipart`)."""
    source = numbered(part)
    if source is not None and source.key is None:
        return
    segment = segment_of(part)
    if segment is None or not isinstance(storage, AppendableStorage):
        await storage.delete(part.storage_key)
    elif whole_upload:
        await storage.discard(segment.key)
    else:
        await storage.cut(segment.key, start=segment.start, end=segment.end)


async def read_part(storage: Storage, part: PartRecord) -> AsyncIterator[bytes]:
    """Open a part's bytes, wherever they are stored."""
    segment = segment_of(part)
    if segment is None or not isinstance(storage, AppendableStorage):
        return await storage.get(part.storage_key)
    return await storage.get_unfinished(segment.key, start=segment.start, end=segment.end)


def sources(parts: list[PartRecord]) -> list[str | UnfinishedRange]:
    """Where the parts' bytes are, for `ComposableStorage.compose`."""
    return [segment_of(part) or part.storage_key for part in parts]


def sealable(storage: Storage, parts: list[PartRecord]) -> str | None:
    """The unfinished object whose first bytes are exactly ``parts``, in this order, or None
    (then the parts are assembled by reading or composing them)."""
    if not isinstance(storage, AppendableStorage):
        return None
    segments = [segment_of(part) for part in parts]
    position, key = 0, None
    for segment in segments:
        if segment is None or segment.start != position or key not in (None, segment.key):
            return None
        position, key = segment.end, segment.key
    return key
