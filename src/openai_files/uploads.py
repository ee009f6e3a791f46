"""The Uploads API: files larger than one request should carry, sent in parts.

`Uploads` creates an upload that declares the file (name, purpose, size, media type), takes
its parts in any order and concurrently, each streamed to storage as it arrives, and on
completion assembles them in the order the client names into one file, which then goes
through the same rules as any upload (policy, quota, validation, owner). Assembly happens
inside the storage where it can (`ComposableStorage`: on local disk the kernel copies the
part files); otherwise, and whenever the content must be read (an ``md5`` to check, JSONL to
validate), the parts stream through once in bounded memory.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import AsyncIterable, AsyncIterator, Sequence
from typing import TYPE_CHECKING

import anyio

from ._core import IDEMPOTENCY_WINDOW
from .errors import (
    BackendUnavailable,
    FileNotFound,
    FileTooLarge,
    InvalidRequest,
    QuotaExceeded,
    UploadNotFound,
)
from .ids import new_object_id
from .metadata.base import PartRecord, UploadRecord, UploadState
from .models import FileObject, UploadObject, UploadPartObject
from .storage.base import ComposableStorage

if TYPE_CHECKING:
    from .service import FilesService

__all__ = ["Uploads"]

log = logging.getLogger("openai_files")

MOVE_PAUSES = (0.05, 0.2, 0.5)
"""Seconds between the tries to move an upload out of ``completing``."""


class Uploads:
    """The Uploads API over one `FilesService` (``service.uploads``)."""

    def __init__(self, service: FilesService) -> None:
        self._service = service

    async def create(
        self,
        owner: str,
        *,
        filename: str,
        purpose: str,
        bytes: int,
        mime_type: str,
        expires_after: int | None = None,
    ) -> UploadObject:
        """Start an upload of a file of ``bytes`` bytes; it expires after the policy's
        ``upload_ttl`` (an hour) unless completed."""
        service, policy = self._service, self._service.policy
        service.check_filename(filename, param="filename")
        service.check_purpose(purpose)
        service.check_file_type(purpose, filename, mime_type, param="filename")
        service.check_expires_after(expires_after)
        limit = min(policy.upload_limit, policy.max_file_size_by_purpose.get(purpose, bytes))
        if not 0 < bytes <= limit:
            raise InvalidRequest(
                f"bytes must be between 1 and {limit} for purpose {purpose!r}; got {bytes}.",
                param="bytes",
            )
        await self._check_quota(owner, bytes)
        now = service.now()
        upload = UploadRecord(
            id=new_object_id("upload_"),
            owner=owner,
            filename=filename,
            purpose=purpose,
            bytes=bytes,
            mime_type=mime_type,
            expires_after=expires_after,
            created_at=now,
            expires_at=now + policy.upload_ttl,
            state="pending",
        )
        await service.metadata.create_upload(upload)
        return _upload_object(upload)

    async def add_part(
        self, owner: str, upload_id: str, data: AsyncIterable[bytes]
    ) -> UploadPartObject:
        """Stream one part of the upload to storage (at most ``max_part_size`` bytes)."""
        service = self._service
        upload = self._pending(await self._get(owner, upload_id))
        part_id = new_object_id("part_")
        key = f"uploads/{upload.id}/{part_id}"
        stored = sum(p.bytes for p in await service.metadata.get_parts(owner, upload.id))
        room = service.policy.upload_limit - stored
        if room <= 0:
            raise InvalidRequest(
                f"Upload {upload_id} holds {stored} bytes in parts, its maximum.", param="data"
            )
        limit = min(service.policy.max_part_size, upload.bytes, room)
        blob = await service.storage.put(key, _limited(data, limit))
        part = PartRecord(
            id=part_id,
            upload_id=upload.id,
            owner=owner,
            bytes=blob.size,
            sha256=blob.sha256,
            storage_key=key,
            created_at=service.now(),
        )
        try:
            added = await service.metadata.add_part(part)
        except BaseException:
            with anyio.CancelScope(shield=True):
                await service.storage.delete(key)
            raise
        if not added:
            with anyio.CancelScope(shield=True):
                await service.storage.delete(key)
            self._pending(await self._get(owner, upload_id))  # says why it is no longer pending
            raise _not_pending(upload_id, "completed")
        return UploadPartObject(id=part.id, created_at=part.created_at, upload_id=upload.id)

    async def discard_part(self, owner: str, upload_id: str, part_id: str) -> None:
        """Remove one part (of a part request that failed after the part was stored)."""
        parts = await self._service.metadata.get_parts(owner, upload_id)
        await self._discard_parts([part for part in parts if part.id == part_id])

    async def complete(
        self, owner: str, upload_id: str, *, part_ids: Sequence[str], md5: str | None = None
    ) -> UploadObject:
        """Assemble the parts, in the order of ``part_ids``, into the upload's file.

        The file is committed under an idempotency key of its own upload, in the same
        transaction as the file: if the request fails after that (the upload's last state
        change is lost), completing again finds the file and finishes the upload with it
        rather than refusing an upload stuck ``completing``.
        """
        service = self._service
        upload = await self._get(owner, upload_id)
        if upload.state == "completing":
            return await self._finish_interrupted(upload)
        upload = self._pending(upload)
        parts = await self._ordered_parts(upload, part_ids)
        total = sum(part.bytes for part in parts)
        if total != upload.bytes:
            raise InvalidRequest(
                f"The parts add up to {total} bytes, but the upload declared {upload.bytes}.",
                param="part_ids",
            )
        if not await service.metadata.move_upload(
            owner, upload_id, from_states=("pending",), to="completing"
        ):
            raise _not_pending(upload_id, "being completed")
        try:
            created = await self._assemble(upload, parts, md5)
        except BaseException:
            with anyio.CancelScope(shield=True):
                await self._move(upload, "pending")  # it can be completed again
            raise
        return await self._completed(upload, created)

    async def _move(
        self, upload: UploadRecord, to: UploadState, file_id: str | None = None
    ) -> None:
        """Move an upload out of ``completing``. A metadata store that fails now is often back
        a moment later, and an upload left ``completing`` waits for its expiry (or for the
        client to complete it again): the move is tried a few times."""
        for pause in (*MOVE_PAUSES, None):
            try:
                await self._service.metadata.move_upload(
                    upload.owner, upload.id, from_states=("completing",), to=to, file_id=file_id
                )
                return
            except BackendUnavailable:
                if pause is None:
                    raise
                await anyio.sleep(pause)

    async def _finish_interrupted(self, upload: UploadRecord) -> UploadObject:
        """Finish an upload left ``completing`` with the file it produced, if it produced one;
        while another request is still assembling it, or if one failed midway and could not
        put it back to ``pending``, it cannot be completed."""
        service = self._service
        file_id = await service.metadata.idempotent_file(
            upload.owner, _completion_key(upload.id), since=service.now() - IDEMPOTENCY_WINDOW
        )
        if file_id is None:
            raise _not_pending(upload.id, "being completed")
        try:
            created = await service.retrieve(upload.owner, file_id)
        except FileNotFound:  # deleted (or expired) since: the upload cannot produce it again
            raise _not_pending(upload.id, "being completed") from None
        return await self._completed(upload, created)

    async def _completed(self, upload: UploadRecord, created: FileObject) -> UploadObject:
        await self._move(upload, "completed", created.id)
        metadata = self._service.metadata
        await self._discard_parts(await metadata.get_parts(upload.owner, upload.id))
        return _upload_object(upload.replace(state="completed"), created)

    async def cancel(self, owner: str, upload_id: str) -> UploadObject:
        """Cancel a pending upload and discard its parts."""
        service = self._service
        upload = self._pending(await self._get(owner, upload_id))
        if not await service.metadata.move_upload(
            owner, upload_id, from_states=("pending",), to="cancelled"
        ):
            raise _not_pending(upload_id, "being completed")
        await self._discard_parts(await service.metadata.get_parts(owner, upload_id))
        return _upload_object(upload.replace(state="cancelled"))

    async def sweep(self, *, batch: int = 100) -> int:
        """Expire uploads past their time and discard parts no upload needs; how many parts."""
        metadata = self._service.metadata
        await metadata.expire_uploads(now=self._service.now())
        discarded = 0
        while parts := await metadata.finished_parts(limit=batch):
            discarded += await self._discard_parts(parts)
            if len(parts) < batch:
                break
        return discarded

    async def _assemble(
        self, upload: UploadRecord, parts: list[PartRecord], md5: str | None
    ) -> FileObject:
        service = self._service
        pending = await service.begin_upload(
            upload.owner,
            filename=upload.filename,
            media_type=upload.mime_type,
            purpose=upload.purpose,
            max_size=upload.bytes,
        )
        async with pending:
            keys = [part.storage_key for part in parts]
            reads_content = md5 is not None or service.policy.rules_for(upload.purpose)
            if reads_content or not isinstance(service.storage, ComposableStorage):
                digest = hashlib.md5(usedforsecurity=False) if md5 else None
                await pending.write(self._read_parts(keys, digest))
                if md5 and digest and digest.hexdigest() != md5.strip().lower():
                    raise InvalidRequest(
                        f"The md5 of the assembled file is {digest.hexdigest()}, not {md5!r}.",
                        param="md5",
                    )
            else:
                await pending.compose(keys, size=upload.bytes, etag=_composite_etag(parts))
            return await pending.finish(
                purpose=upload.purpose,
                expires_after=upload.expires_after,
                idempotency_key=_completion_key(upload.id),
            )

    async def _read_parts(
        self, keys: list[str], digest: hashlib._Hash | None
    ) -> AsyncIterator[bytes]:
        """The parts' bytes in order, each chunk added to ``digest`` when there is one."""
        for key in keys:
            async for chunk in await self._service.storage.get(key):
                if digest is not None:
                    digest.update(chunk)
                yield chunk

    async def _ordered_parts(
        self, upload: UploadRecord, part_ids: Sequence[str]
    ) -> list[PartRecord]:
        if not part_ids or not all(isinstance(part_id, str) for part_id in part_ids):
            raise InvalidRequest("part_ids must be a non-empty list of part ids.", param="part_ids")
        if len(set(part_ids)) != len(part_ids):
            raise InvalidRequest("part_ids names a part more than once.", param="part_ids")
        known = {p.id: p for p in await self._service.metadata.get_parts(upload.owner, upload.id)}
        unknown = [part_id for part_id in part_ids if part_id not in known]
        if unknown:
            raise InvalidRequest(
                f"No such part in upload {upload.id}: {unknown[0][:100]}.", param="part_ids"
            )
        return [known[part_id] for part_id in part_ids]

    async def _get(self, owner: str, upload_id: str) -> UploadRecord:
        upload = await self._service.metadata.get_upload(owner, upload_id)
        if upload is None:
            raise UploadNotFound(upload_id)
        return upload

    def _pending(self, upload: UploadRecord) -> UploadRecord:
        """``upload``, if it still takes parts and can be completed or cancelled."""
        state = upload.state
        if state == "pending" and self._service.now() >= upload.expires_at:
            state = "expired"
        if state != "pending":
            raise _not_pending(upload.id, state)
        return upload

    async def _check_quota(self, owner: str, size: int) -> None:
        quota = self._service.policy.quota
        if quota is None:
            return
        usage = await self._service.metadata.usage(owner)
        if not quota.allows(usage.files + 1, usage.bytes + size):
            raise QuotaExceeded.for_usage(quota.max_files, quota.max_bytes, usage.files)

    async def _discard_parts(self, parts: list[PartRecord]) -> int:
        service = self._service
        discarded = 0
        with anyio.CancelScope(shield=True):
            for part in parts:
                try:
                    await service.storage.delete(part.storage_key)
                except Exception:
                    log.warning("removing part %s failed; the sweeper will retry", part.id)
                    continue
                await service.metadata.remove_part(part.id)
                discarded += 1
        return discarded


def _upload_object(upload: UploadRecord, file: FileObject | None = None) -> UploadObject:
    return UploadObject(
        id=upload.id,
        bytes=upload.bytes,
        created_at=upload.created_at,
        filename=upload.filename,
        purpose=upload.purpose,
        status="pending" if upload.state == "completing" else upload.state,
        expires_at=upload.expires_at,
        file=file,
    )


def _not_pending(upload_id: str, state: str) -> InvalidRequest:
    return InvalidRequest(
        f"Upload {upload_id} is {state}: no parts can be added and it cannot be completed "
        "or cancelled any more.",
        param="upload_id",
    )


def _completion_key(upload_id: str) -> str:
    """The idempotency key of the file an upload produces. It holds a line break, which no HTTP
    header can carry, so no client's ``Idempotency-Key`` can ever name it."""
    return f"\nupload {upload_id}"


def _composite_etag(parts: list[PartRecord]) -> str:
    """Like S3's multipart ETag: the digest of the parts' digests, and how many there were."""
    digests = b"".join(bytes.fromhex(part.sha256) for part in parts)
    return f"{hashlib.sha256(digests).hexdigest()}-{len(parts)}"


async def _limited(chunks: AsyncIterable[bytes], limit: int) -> AsyncIterator[bytes]:
    total = 0
    async for chunk in chunks:
        total += len(chunk)
        if total > limit:
            raise FileTooLarge(limit, param="data")
        yield chunk
