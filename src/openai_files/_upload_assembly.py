"""Completing an upload: its parts assembled into one file, in the order the client names,
where the storage can do it without moving bytes (see `openai_files.uploads`)."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator

from ._core import Core
from ._pending_upload import PendingUpload, begin_upload
from ._upload_multipart import multipart_of, staged_parts
from ._upload_parts import read_part, sealable, sources
from .errors import InvalidRequest, shown
from .metadata.base import PartRecord, UploadRecord
from .models import FileObject
from .storage.base import ComposableStorage, MultipartStorage, ObjectRange, Storage

__all__ = ["assemble", "completion_key"]


async def assemble(
    core: Core, upload: UploadRecord, parts: list[PartRecord], md5: str | None
) -> FileObject:
    """The file of ``upload`` made of ``parts`` in that order (checked against ``md5`` when
    given), assembled where the storage can: sealed (in-order parts on local disk), taken from
    the multipart upload the parts went into (S3), composed inside the storage, or streamed
    through once."""
    pending = await begin_upload(
        core,
        upload.owner,
        filename=upload.filename,
        media_type=upload.mime_type,
        purpose=upload.purpose,
        max_size=upload.bytes,
        bytes_counted=True,  # the parts count until they are discarded, after the commit
    )
    async with pending:
        storage, etag = core.storage, _composite_etag(parts)
        reads_content = md5 is not None or core.policy.rules_for(upload.purpose)
        current = await core.metadata.get_upload(upload.owner, upload.id)
        numbered_parts = isinstance(storage, MultipartStorage)
        if current is not None and numbered_parts and multipart_of(current) is not None:
            await _assemble_multipart(core, current, parts, md5, pending, etag)
        elif (unfinished := sealable(storage, parts)) is not None:
            content = _read_parts(storage, parts, md5) if reads_content else None
            await pending.seal(unfinished, size=upload.bytes, etag=etag, content=content)
        elif isinstance(storage, ComposableStorage):
            content = _read_parts(storage, parts, md5) if reads_content else None
            await pending.compose(sources(parts), size=upload.bytes, etag=etag, content=content)
        else:
            await pending.write(_read_parts(storage, parts, md5))
        return await pending.finish(
            purpose=upload.purpose,
            expires_after=upload.expires_after,
            idempotency_key=completion_key(upload.id),
        )


async def _assemble_multipart(
    core: Core,
    upload: UploadRecord,
    parts: list[PartRecord],
    md5: str | None,
    pending: PendingUpload,
    etag: str,
) -> None:
    """Complete the upload's multipart upload with its staged parts (see
    `._upload_multipart`). The parts named in that order are the file: it takes the
    object. Otherwise the file is written from the staged parts, read back from the
    object, and the others."""
    storage = core.storage
    where = multipart_of(upload)
    assert where is not None
    assert isinstance(storage, MultipartStorage)
    key, multipart_id = where
    staged = staged_parts(parts)
    ranges: dict[str, tuple[int, int]] = {}
    if staged:
        size = await storage.complete_multipart(key, multipart_id, [source for _, source in staged])
        offset = 0
        for part, _ in staged:
            ranges[part.id] = (offset, offset + part.bytes)
            offset += part.bytes
        if size != offset:
            raise InvalidRequest(
                f"The parts of upload {upload.id} can no longer be assembled (they were "
                "assembled before without some of them). Cancel it and upload the file "
                "again.",
                param="part_ids",
            )
    reads_content = md5 is not None or core.policy.rules_for(upload.purpose)
    content = _read_parts(storage, parts, md5, key, ranges)
    checked = content if reads_content else None
    if [part.id for part, _ in staged] == [part.id for part in parts]:
        await pending.adopt(key, size=upload.bytes, etag=etag, content=checked)
    elif isinstance(storage, ComposableStorage):
        placed = [
            ObjectRange(key, *ranges[part.id]) if part.id in ranges else source
            for part, source in zip(parts, sources(parts), strict=True)
        ]
        await pending.compose(placed, size=upload.bytes, etag=etag, content=checked)
    else:
        await pending.write(content)


async def _read_parts(
    storage: Storage,
    parts: list[PartRecord],
    md5: str | None,
    staged: str = "",
    ranges: dict[str, tuple[int, int]] | None = None,
) -> AsyncIterator[bytes]:
    """The parts' bytes in order (those in ``ranges`` read from that range of the object
    ``staged``); with ``md5``, the stream fails after the last byte (before anything is
    stored) unless the bytes have that MD5."""
    digest = hashlib.md5(usedforsecurity=False)
    ranges = ranges or {}
    for part in parts:
        if part.id in ranges:
            start, end = ranges[part.id]
            opened = await storage.get(staged, start=start, end=end)
        else:
            opened = await read_part(storage, part)
        async for chunk in opened:
            if md5 is not None:
                digest.update(chunk)
            yield chunk
    if md5 is not None and digest.hexdigest() != md5.strip().lower():
        raise InvalidRequest(
            f"The md5 of the assembled file is {digest.hexdigest()}, not {shown(md5)}.",
            param="md5",
        )


def completion_key(upload_id: str) -> str:
    """The idempotency key of the file an upload produces. It holds a line break, which no HTTP
    header can carry, so no client's ``Idempotency-Key`` can ever name it."""
    return f"\nupload {upload_id}"


def _composite_etag(parts: list[PartRecord]) -> str:
    """Like S3's multipart ETag: the digest of the parts' digests, and how many there were."""
    digests = b"".join(bytes.fromhex(part.sha256) for part in parts)
    return f"{hashlib.sha256(digests).hexdigest()}-{len(parts)}"
