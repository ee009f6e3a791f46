"""The parts of an upload (Uploads API) sent into one multipart upload of the storage
(`MultipartStorage`: S3), so that completing the upload in the order its parts arrived moves
no bytes.

The first part that may be large enough starts the multipart upload, of a fresh storage key
(the file's key if it completes directly), and records it on the upload
(`MetadataStore.claim_part_numbers`, ``"<key> <multipart upload id>"``), where any replica
finds it. Each part claims a block of part numbers before it streams, so parts sent at once
never share a number, and is sent as the parts of its block (`MultipartStorage.put_numbered`).
A part's record names where its bytes went in its storage key:

- ``uploads/<upload id>/<part id>.parts-<first>-<last>``: parts ``first`` to ``last`` of the
  multipart upload; no object has that key;
- ``uploads/<upload id>/<part id>.part-<n>``: a part smaller than a multipart part may be
  (`MultipartStorage.min_part_size`), stored as an object; it becomes part ``n`` if the
  multipart upload completes with it last;
- anything else: an object of its own, as on any storage (the upload has no multipart
  upload, or it is gone, or its part numbers ran out).

At completion the *staged* parts, those the multipart upload can hold (the large ones in
the order they arrived, and the last one to arrive if it is small), are completed into the
multipart upload's object (`MultipartStorage.complete_multipart`). If the parts named are
exactly those, in that order, the object is the file: no byte moved. Otherwise the staged
parts are read back as ranges of that object, the others from their own objects, and the
file is written from them; the staged object goes when the upload closes.
"""

from __future__ import annotations

import logging
import re
from collections.abc import AsyncIterable

import anyio

from ._core import Core
from .ids import new_storage_key
from .metadata.base import PartRecord, UploadRecord
from .storage.base import MultipartStorage, NumberedSource, StoredBlob

__all__ = [
    "MAX_PART_NUMBERS",
    "close_multipart",
    "multipart_of",
    "numbered",
    "staged_parts",
    "stop_numbering",
    "store_numbered",
]

MAX_PART_NUMBERS = 10_000
"""S3's: a multipart upload holds parts numbered 1 to 10,000."""

_NUMBERED = re.compile(r"\.parts-(\d+)-(\d+)$")
_SMALL = re.compile(r"\.part-(\d+)$")

log = logging.getLogger("openai_files")


def multipart_of(upload: UploadRecord) -> tuple[str, str] | None:
    """The object key and the id of the upload's multipart upload, if it has one."""
    if upload.multipart is None:
        return None
    key, _, upload_id = upload.multipart.partition(" ")
    return key, upload_id


def numbered(part: PartRecord) -> NumberedSource | None:
    """Where in the multipart upload ``part`` goes, or None for a part stored as an object
    of its own only."""
    if found := _NUMBERED.search(part.storage_key):
        return NumberedSource(int(found[1]), int(found[2]), part.bytes)
    if found := _SMALL.search(part.storage_key):
        number = int(found[1])
        return NumberedSource(number, number, part.bytes, key=part.storage_key)
    return None


def staged_parts(parts: list[PartRecord]) -> list[tuple[PartRecord, NumberedSource]]:
    """The parts the multipart upload can be completed with, in the order they arrived: the
    large ones, and the small one that arrived last, if one did."""
    sources = [(part, source) for part in parts if (source := numbered(part)) is not None]
    sources.sort(key=lambda pair: pair[1].first)
    staged = [(part, source) for part, source in sources if source.key is None]
    if sources and sources[-1][1].key is not None:
        staged.append(sources[-1])
    return staged


async def store_numbered(
    core: Core,
    storage: MultipartStorage,
    upload: UploadRecord,
    part_id: str,
    chunks: AsyncIterable[bytes],
) -> tuple[str, StoredBlob] | None:
    """Store one part into the upload's multipart upload (starting it if the upload has
    none): the storage key its record names (see the module) and what was stored. None,
    without taking a chunk, when it cannot go there (the part cannot be large enough, the
    storage cannot, the upload is no longer pending or its part numbers ran out)."""
    folder = f"uploads/{upload.id}"
    limit = min(core.policy.max_part_size, upload.bytes - upload.received)
    if limit < storage.min_part_size:
        return await _store_small(core, upload, part_id, chunks)
    count = storage.numbers_for(limit)
    multipart, started = upload.multipart, None
    if multipart is None:
        key = new_storage_key()
        if (started := await storage.start_multipart(key)) is None:
            return None
        multipart = f"{key} {started}"
    claimed = None
    try:
        claimed = await core.metadata.claim_part_numbers(
            upload.owner, upload.id, count, multipart=multipart, limit=MAX_PART_NUMBERS
        )
    finally:
        if started is not None and (claimed is None or claimed[0] != multipart):
            with anyio.CancelScope(shield=True):
                await _abort(storage, multipart)  # another part's went first, or none will
    if claimed is None:
        return None
    multipart, first = claimed
    key, _, upload_id = multipart.partition(" ")
    small_key = f"{folder}/{part_id}.part-{first}"
    stored = await storage.put_numbered(
        key, upload_id, chunks, first=first, count=count, small_key=small_key
    )
    if stored.last is None:
        return small_key, stored.blob
    return f"{folder}/{part_id}.parts-{first}-{stored.last}", stored.blob


async def _store_small(
    core: Core, upload: UploadRecord, part_id: str, chunks: AsyncIterable[bytes]
) -> tuple[str, StoredBlob] | None:
    """A part too small for a multipart part, of an upload that has a multipart upload
    already: stored as an object, under a number of its own, so that it can end the
    multipart upload (it is most often the last part). None, without taking a chunk, when
    the upload has none or the numbers cannot be claimed."""
    if upload.multipart is None:
        return None
    claimed = await core.metadata.claim_part_numbers(
        upload.owner, upload.id, 1, multipart=upload.multipart, limit=MAX_PART_NUMBERS
    )
    if claimed is None:
        return None
    key = f"uploads/{upload.id}/{part_id}.part-{claimed[1]}"
    return key, await core.storage.put(key, chunks)


async def stop_numbering(core: Core, upload: UploadRecord) -> None:
    """Claim every part number the pending ``upload`` has left, so that parts from now on are
    objects of their own: after a completion that failed, its multipart upload may have been
    completed into its object, and takes no more parts. (A part that claimed numbers before
    this fails, and is sent again.)"""
    metadata = core.metadata
    while (current := await metadata.get_upload(upload.owner, upload.id)) is not None:
        left = MAX_PART_NUMBERS - current.part_numbers
        if current.multipart is None or left <= 0 or current.state != "pending":
            return
        claimed = await metadata.claim_part_numbers(
            upload.owner, upload.id, left, multipart=current.multipart, limit=MAX_PART_NUMBERS
        )
        if claimed is not None:
            return


async def close_multipart(core: Core, upload: UploadRecord) -> None:
    """Once ``upload`` is closed: abort its multipart upload, and remove the object it was
    completed into unless a file record holds it (the upload's file)."""
    storage, where = core.storage, multipart_of(upload)
    if where is None or not isinstance(storage, MultipartStorage):
        return
    key, upload_id = where
    await storage.abort_multipart(key, upload_id)
    if key not in await core.metadata.existing_keys([key]):
        await storage.delete(key)


async def _abort(storage: MultipartStorage, multipart: str) -> None:
    key, _, upload_id = multipart.partition(" ")
    try:
        await storage.abort_multipart(key, upload_id)
    except Exception:  # the orphan sweep's remove_partials aborts it later
        log.warning("aborting an unused multipart upload of %s failed", key)
