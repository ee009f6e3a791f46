"""The Uploads API: files larger than one request should carry, sent in parts.

`Uploads` creates an upload that declares the file (name, purpose, size, media type), takes
its parts in any order and concurrently, each streamed to storage as it arrives, and on
completion assembles them in the order the client names into one file, which then goes
through the same rules as any upload (policy, quota, validation, owner).

Parts sent one after another on local disk are appended to one unfinished file
(`AppendableStorage`, see `openai_files._upload_parts`), which completion seals into the
file without copying a byte. Otherwise assembly happens inside the storage where it can
(`ComposableStorage`: on local disk the kernel copies the part files, on S3 the service copies
them into one multipart upload), or the parts stream through once in bounded memory. Whenever
the content must be read (an ``md5`` to check, JSONL to validate), it is read once, in bounded
memory, before the storage assembles it.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterable, Sequence

import anyio

from ._checks import (
    check_expires_after,
    check_file_type,
    check_filename,
    check_purpose,
    checked_owner,
)
from ._core import IDEMPOTENCY_WINDOW, Core
from ._upload_assembly import assemble, completion_key
from ._upload_multipart import close_multipart, stop_numbering
from ._upload_parts import (
    PartMeter,
    part_too_large,
    remove_part_bytes,
    segment_of,
    store_part,
    too_many_parts,
)
from .errors import (
    BackendUnavailable,
    FileNotFound,
    InvalidRequest,
    OpenAIFilesError,
    QuotaExceeded,
    UploadNotFound,
    shown,
)
from .ids import new_object_id
from .inputs import check_media_type, possible_id
from .metadata.base import PartBatches, PartOutcome, PartRecord, UploadRecord, UploadState
from .models import FileObject, UploadObject, UploadPartObject
from .storage.base import MultipartStorage

__all__ = ["Uploads"]

log = logging.getLogger("openai_files")

PART_ID_PREFIX = "part_"

MOVE_PAUSES = (0.05, 0.2, 0.5)
"""Seconds between the tries to move an upload out of ``completing``."""


class Uploads:
    """The Uploads API of one `FilesService`: use ``service.uploads``.

    Every method takes the owner explicitly, as the service's do, and applies the same check
    to it (`ValueError` for an empty one or one over 255 characters).
    """

    def __init__(self, core: Core) -> None:
        self._core = core

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
        core, policy = self._core, self._core.policy
        owner = checked_owner(owner)
        check_filename(policy, filename, param="filename")
        check_media_type(mime_type, param="mime_type")
        check_purpose(policy, purpose)
        check_file_type(policy, purpose, filename, mime_type, param="filename")
        check_expires_after(expires_after)
        limit = min(policy.upload_limit, policy.max_file_size_by_purpose.get(purpose, bytes))
        if not 0 < bytes <= limit:
            raise InvalidRequest(
                f"bytes must be between 1 and {limit} for purpose {purpose!r}; got {bytes}.",
                param="bytes",
            )
        await self._check_quota(owner, bytes)  # early: the declared bytes must fit at all
        now = core.now()
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
        await self._open(upload)
        return _upload_object(upload)

    async def _open(self, upload: UploadRecord) -> None:
        """Record the upload, within the owner's bound on open uploads. Uploads past their
        expiry count as open until expired: at the bound, they are expired and it tries again."""
        metadata, bound = self._core.metadata, self._core.policy.max_open_uploads
        try:
            await metadata.create_upload(upload, max_open=bound)
        except QuotaExceeded:
            if not await metadata.expire_uploads(now=self._core.now()):
                raise
            await metadata.create_upload(upload, max_open=bound)

    async def add_part(
        self, owner: str, upload_id: str, data: AsyncIterable[bytes]
    ) -> UploadPartObject:
        """Stream one part of the upload to storage: at most ``max_part_size`` bytes, and no
        more than the upload's declared ``bytes`` leave room for. Its bytes count against the
        owner's byte quota as they arrive (reserved before they are stored)."""
        core, policy = self._core, self._core.policy
        upload = self._pending(await self._get(owner, upload_id))
        if upload.part_count >= policy.max_upload_parts:
            raise too_many_parts(upload.id, policy.max_upload_parts)
        limit = min(policy.max_part_size, upload.bytes - upload.received)
        if limit <= 0:
            raise part_too_large(upload, 1, policy.max_part_size)
        part_id = new_object_id(PART_ID_PREFIX)
        meter = PartMeter(core, upload, limit, still_pending=lambda: self._still_pending(upload))
        try:
            key, blob = await store_part(core, upload, part_id, meter.metered(data))
        except BaseException:
            with anyio.CancelScope(shield=True):
                await meter.release()
            raise
        part = PartRecord(
            id=part_id,
            upload_id=upload.id,
            owner=owner,
            bytes=blob.size,
            sha256=blob.sha256,
            storage_key=key,
            created_at=core.now(),
        )
        try:
            outcome = await core.metadata.add_part(
                part, reserved=meter.reserved, max_parts=policy.max_upload_parts
            )
        except BaseException:
            # Whether the part was recorded is unknown: what it reserved stays counted until
            # the upload closes, which settles the upload's reservation.
            with anyio.CancelScope(shield=True):
                await remove_part_bytes(core.storage, part, whole_upload=False)
            raise
        if outcome != "added":
            with anyio.CancelScope(shield=True):
                await remove_part_bytes(core.storage, part, whole_upload=False)
            raise await self._refusal(upload, part, outcome)
        return UploadPartObject(id=part.id, created_at=part.created_at, upload_id=upload.id)

    async def _refusal(
        self, upload: UploadRecord, part: PartRecord, outcome: PartOutcome
    ) -> OpenAIFilesError:
        """The error for a part the store refused (another request changed the upload since
        this one began)."""
        if outcome == "over_part_limit":
            return too_many_parts(upload.id, self._core.policy.max_upload_parts)
        current = self._pending(await self._get(upload.owner, upload.id))  # raises if closed
        if outcome == "over_declared_bytes":
            return part_too_large(current, part.bytes, self._core.policy.max_part_size)
        return _not_pending(upload.id, "completed")

    async def discard_part(self, owner: str, upload_id: str, part_id: str) -> None:
        """Remove one part (of a part request that failed after the part was stored)."""
        parts = await self._core.metadata.get_parts(checked_owner(owner), upload_id)
        await self._discard_parts(
            [part for part in parts if part.id == part_id], whole_upload=False
        )

    async def complete(
        self, owner: str, upload_id: str, *, part_ids: Sequence[str], md5: str | None = None
    ) -> UploadObject:
        """Assemble the parts, in the order of ``part_ids``, into the upload's file.

        The file is committed under an idempotency key of its own upload, in the same
        transaction as the file: if the request fails after that (the upload's last state
        change is lost), completing again finds the file and finishes the upload with it
        rather than refusing an upload stuck ``completing``.
        """
        core = self._core
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
        if not await core.metadata.move_upload(
            owner, upload_id, from_states=("pending",), to="completing"
        ):
            raise _not_pending(upload_id, "being completed")
        try:
            created = await assemble(self._core, upload, parts, md5)
        except BaseException:
            with anyio.CancelScope(shield=True):
                await self._move(upload, "pending")  # it can be completed again
                try:
                    await stop_numbering(self._core, upload)
                except Exception:  # a part sent next fails if the multipart upload is gone
                    log.warning("could not stop the part numbers of %s", upload.id)
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
                await self._core.metadata.move_upload(
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
        core = self._core
        file_id = await core.metadata.idempotent_file(
            upload.owner, completion_key(upload.id), since=core.now() - IDEMPOTENCY_WINDOW
        )
        if file_id is None:
            raise _not_pending(upload.id, "being completed")
        try:
            created = await core.retrieve(upload.owner, file_id)
        except FileNotFound:  # deleted (or expired) since: the upload cannot produce it again
            raise _not_pending(upload.id, "being completed") from None
        return await self._completed(upload, created)

    async def _completed(self, upload: UploadRecord, created: FileObject) -> UploadObject:
        await self._move(upload, "completed", created.id)
        metadata = self._core.metadata
        await self._discard_parts(await metadata.get_parts(upload.owner, upload.id))
        await self._close_multipart(upload)
        return _upload_object(upload.replace(state="completed"), created)

    async def _close_multipart(self, upload: UploadRecord) -> None:
        """Abort the closed upload's multipart upload (and remove what it was completed
        into, unless that is the file), as the upload's record now says it is; nothing to
        read where the storage has no multipart uploads."""
        core = self._core
        if not isinstance(core.storage, MultipartStorage):
            return
        with anyio.CancelScope(shield=True):
            try:
                current = await core.metadata.get_upload(upload.owner, upload.id)
            except Exception:  # the orphan sweep's remove_partials aborts it later
                log.warning("closing the multipart upload of %s failed", upload.id)
                return
            await self._close_read(upload.id, current)

    async def _close_read(self, upload_id: str, current: UploadRecord | None) -> None:
        """`_close_multipart` with the upload's record just read (``current``)."""
        with anyio.CancelScope(shield=True):
            try:
                if current is not None and not current.is_open:
                    await close_multipart(self._core, current)
            except Exception:  # the orphan sweep's remove_partials aborts it later
                log.warning("closing the multipart upload of %s failed", upload_id)

    async def cancel(self, owner: str, upload_id: str) -> UploadObject:
        """Cancel a pending upload and discard its parts."""
        core = self._core
        upload = self._pending(await self._get(owner, upload_id))
        if not await core.metadata.move_upload(
            owner, upload_id, from_states=("pending",), to="cancelled"
        ):
            raise _not_pending(upload_id, "being completed")
        await self._discard_parts(await core.metadata.get_parts(owner, upload_id))
        await self._close_multipart(upload)
        return _upload_object(upload.replace(state="cancelled"))

    async def sweep(self, *, batch: int = 100) -> int:
        """Expire uploads past their time and discard parts no upload needs; how many parts."""
        metadata = self._core.metadata
        multipart = isinstance(self._core.storage, MultipartStorage)
        await metadata.expire_uploads(now=self._core.now())
        discarded = 0
        while parts := await metadata.finished_parts(limit=batch):
            discarded += await self._discard_parts(parts)
            closed = {(part.owner, part.upload_id) for part in parts} if multipart else set()
            for owner, upload_id in sorted(closed):
                upload = await metadata.get_upload(owner, upload_id)
                if upload is not None and upload.multipart is not None:
                    await self._close_read(upload_id, upload)
            if len(parts) < batch:
                break
        return discarded

    async def _ordered_parts(
        self, upload: UploadRecord, part_ids: Sequence[str]
    ) -> list[PartRecord]:
        if not part_ids or not all(isinstance(part_id, str) for part_id in part_ids):
            raise InvalidRequest("part_ids must be a non-empty list of part ids.", param="part_ids")
        if len(set(part_ids)) != len(part_ids):
            raise InvalidRequest("part_ids names a part more than once.", param="part_ids")
        known = {p.id: p for p in await self._core.metadata.get_parts(upload.owner, upload.id)}
        unknown = [part_id for part_id in part_ids if part_id not in known]
        if unknown:
            raise InvalidRequest(
                f"No such part in upload {upload.id}: {shown(unknown[0])}.", param="part_ids"
            )
        return [known[part_id] for part_id in part_ids]

    async def _get(self, owner: str, upload_id: str) -> UploadRecord:
        if not possible_id(upload_id):
            raise UploadNotFound(upload_id)
        upload = await self._core.metadata.get_upload(checked_owner(owner), upload_id)
        if upload is None:
            raise UploadNotFound(upload_id)
        return upload

    async def _still_pending(self, upload: UploadRecord) -> None:
        """Raise the error that says why ``upload`` no longer takes parts, if it does not."""
        self._pending(await self._get(upload.owner, upload.id))

    def _pending(self, upload: UploadRecord) -> UploadRecord:
        """``upload``, if it still takes parts and can be completed or cancelled."""
        state = upload.state
        if state == "pending" and self._core.now() >= upload.expires_at:
            state = "expired"
        if state != "pending":
            raise _not_pending(upload.id, state)
        return upload

    async def _check_quota(self, owner: str, size: int) -> None:
        quota = self._core.policy.quota
        if quota is None:
            return
        usage = await self._core.metadata.usage(owner)
        if not quota.allows(usage.files + 1, usage.bytes + size):
            raise QuotaExceeded.for_usage(quota.max_files, quota.max_bytes, usage.files)

    async def _discard_parts(self, parts: list[PartRecord], *, whole_upload: bool = True) -> int:
        """Remove the parts' bytes, then their records (in one transaction where the store
        offers `PartBatches`); ``whole_upload``: these are all the parts of their uploads
        (which are closed), and the unfinished object their segments share is removed once."""
        core, metadata = self._core, self._core.metadata
        removed: list[str] = []
        gone: set[str] = set()  # unfinished objects of whole uploads removed already
        with anyio.CancelScope(shield=True):
            for part in parts:
                segment = segment_of(part) if whole_upload else None
                if segment is None or segment.key not in gone:
                    try:
                        await remove_part_bytes(core.storage, part, whole_upload=whole_upload)
                    except Exception:
                        log.warning("removing part %s failed; the sweeper will retry", part.id)
                        continue
                    if segment is not None:
                        gone.add(segment.key)
                removed.append(part.id)
            if isinstance(metadata, PartBatches):
                await metadata.remove_parts(removed)
            else:
                for part_id in removed:
                    await metadata.remove_part(part_id)
        return len(removed)


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
