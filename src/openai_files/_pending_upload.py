"""`PendingUpload`: one upload in progress, from its first byte to a visible file.

The bytes stream through one pass that counts them against the size limit, reserves them
against the owner's quota, and feeds the JSONL validators, on their way to storage. Nothing is
visible until `PendingUpload.finish`; leaving the upload's context any other way removes what
it stored.

A small file is recorded in one step: its bytes are stored, then its record is inserted
``active`` in one transaction that checks the quota and the idempotency key. A file of at
most the service's ``inline_max`` bytes is not stored at all: the metadata store keeps its
bytes in that same transaction (`InlineFiles.insert_inline`). A larger one
(past `RECORD_AFTER` bytes) gets a ``pending`` record while it streams, which reserves its
bytes against the quota as they come and leads the sweeper to them if the upload dies, and is
committed at the end. Either way a record is visible only once its bytes are stored (durably,
where the storage flushes); a crash between storing a small file and recording it leaves bytes
that no record knows, which the orphan sweep removes.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterable, AsyncIterator, Sequence
from types import TracebackType
from typing import Self

import anyio

from ._checks import (
    check_expires_after,
    check_file_type,
    check_filename,
    check_purpose,
    checked_owner,
)
from ._core import IDEMPOTENCY_WINDOW, Core, file_object
from .errors import Conflict, FileTooLarge, InvalidFile, InvalidRequest, QuotaExceeded
from .ids import inline_key, new_file_id, new_storage_key
from .inputs import check_media_type
from .metadata.base import FileRecord, Quota
from .models import FileObject
from .storage.base import (
    AppendableStorage,
    BlobHasher,
    ComposableStorage,
    ObjectRange,
    StoredBlob,
    UnfinishedRange,
    chained,
)
from .validation import JSONLRules, JSONLValidator

__all__ = ["QUOTA_STEP", "RECORD_AFTER", "PendingUpload", "begin_upload"]

log = logging.getLogger("openai_files")

QUOTA_STEP = 8 * 1024 * 1024
"""Bytes reserved against a byte quota at a time while an upload streams in."""
RECORD_AFTER = 256 * 1024
"""Bytes an upload streams before its ``pending`` record is written; a file that ends sooner
is recorded in one step, after its bytes are stored (`PendingUpload.finish`)."""


async def begin_upload(
    core: Core,
    owner: str,
    *,
    filename: str,
    media_type: str | None = None,
    purpose: str | None = None,
    system: bool = False,
    max_size: int | None = None,
    bytes_counted: bool = False,
) -> PendingUpload:
    """Check the request and return the upload (see `FilesService.begin_upload`); nothing
    is written yet. ``bytes_counted``: its bytes count against the owner's byte quota already
    (the parts of an upload of the Uploads API), so they are not reserved again while they
    stream."""
    check_filename(core.policy, filename)
    if media_type is not None:
        check_media_type(media_type, param="file", name="The file part's Content-Type")
    if purpose is not None:
        check_purpose(core.policy, purpose, system=system)
        check_file_type(core.policy, purpose, filename, media_type)
    created_us = int(core.clock() * 1_000_000)
    record = FileRecord(
        id=new_file_id(created_us, core.policy.file_id_format),
        owner=checked_owner(owner),
        purpose=purpose or "",
        filename=filename,
        bytes=0,
        created_us=created_us,
        expires_at=None,
        status="uploaded",
        status_details=None,
        storage_key=new_storage_key(),
        sha256=None,
        media_type=media_type,
        state="pending",
        changed_at=created_us // 1_000_000,
    )
    return PendingUpload(
        core,
        record,
        purpose=purpose,
        system=system,
        max_size=max_size,
        bytes_counted=bytes_counted,
    )


class PendingUpload:
    """An upload in progress: `write` its bytes once, then `finish` it with its purpose.

    ``purpose`` is given up front when the caller knows it, so the right size limit and
    validation apply from the first byte; otherwise (the purpose arrives after the file) the
    global limit applies while streaming and every purpose's validation runs, and `finish`
    applies the purpose's own rules.
    """

    def __init__(
        self,
        core: Core,
        record: FileRecord,
        *,
        purpose: str | None,
        system: bool,
        max_size: int | None = None,
        bytes_counted: bool = False,
    ) -> None:
        self._core = core
        self.record = record
        self._purpose = purpose
        self._system = system
        # An explicit ``max_size`` (the Uploads API's) replaces the policy's size limits, which
        # the caller has applied already.
        self._own_limit = max_size is not None
        self._max_size = max_size or core.policy.max_size_for(purpose)
        # Bytes counted against the byte quota already (an upload's parts) are not reserved
        # again: the file's size counts when it commits, and the parts until they are gone.
        quota = core.policy.quota
        self._metered_bytes = (
            not bytes_counted and quota is not None and quota.max_bytes is not None
        )
        # The quota a record inserted ``active`` (a small file, in one step) is checked
        # against: without the byte limit when its bytes are counted already.
        self._quota = quota
        if bytes_counted and quota is not None:
            self._quota = Quota(max_files=quota.max_files)
        self._recorded = False  # a pending record is in the store
        self._blob: StoredBlob | None = None
        self._etag: str | None = None
        self._finished = False
        self._reserved = 0
        self._validators: dict[JSONLRules, JSONLValidator] = {}
        self._maybe_committed = False
        self._borrowed = False  # the bytes under the record's key are not this upload's to remove
        self._inline: bytes | None = None  # a small file's bytes, for its record's insert

    @property
    def file_id(self) -> str:
        return self.record.id

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if not self._finished:
            await self.abort()

    async def write(self, chunks: AsyncIterable[bytes]) -> StoredBlob:
        """Stream the file's bytes to storage, refusing them as soon as they pass a limit."""
        if self._blob is not None:
            raise RuntimeError("an upload's bytes are written once")
        self._start_validators()
        metered = self._metered(chunks, self._max_size)
        if self._core.inline_max:
            first, rest = await _first_bytes(metered, self._core.inline_max)
            if rest is None:  # the whole file: its record's insert keeps it (`finish`)
                return self._keep_inline(b"".join(first))
            metered = chained(first, rest)
        self._blob = await self._core.storage.put(self.record.storage_key, metered)
        self._etag = self._blob.sha256
        return self._blob

    def _keep_inline(self, data: bytes) -> StoredBlob:
        """Hold a file of at most ``inline_max`` bytes for `finish` to insert with its record."""
        hasher = BlobHasher()
        hasher.update(data)
        self._inline = data
        self.record = self.record.replace(storage_key=inline_key(self.record.storage_key))
        self._blob = hasher.result()
        self._etag = self._blob.sha256
        return self._blob

    async def compose(
        self,
        sources: Sequence[str | ObjectRange | UnfinishedRange],
        *,
        size: int,
        etag: str,
        content: AsyncIterable[bytes] | None = None,
    ) -> None:
        """Assemble the file from stored objects inside the storage (`ComposableStorage`),
        instead of `write`; ``size`` is what they add up to, ``etag`` identifies the content.
        ``content``, when the bytes must be checked, is those bytes, read once before the
        composition, as for `seal`."""
        storage = self._core.storage
        assert isinstance(storage, ComposableStorage)
        blob = await self._checked(content, size)
        composed = await storage.compose(self.record.storage_key, sources)
        self._blob = StoredBlob(size=composed, sha256=blob.sha256)
        self._etag = blob.sha256 or etag

    async def seal(
        self,
        unfinished: str,
        *,
        size: int,
        etag: str,
        content: AsyncIterable[bytes] | None = None,
    ) -> None:
        """Take the file from the first ``size`` bytes of the unfinished object
        ``unfinished`` (`AppendableStorage.seal`), instead of `write`: no byte is copied.
        ``content``, when the bytes must be checked (JSONL validation, or a stream that fails
        on a wrong digest), is those bytes: they are read once, before the seal, and hashed
        on the way (the file's SHA-256 is its etag, as after `write`)."""
        storage = self._core.storage
        assert isinstance(storage, AppendableStorage)
        blob = await self._checked(content, size)
        await storage.seal(unfinished, self.record.storage_key, size=size)
        self._blob = blob
        self._etag = blob.sha256 or etag

    async def adopt(
        self,
        key: str,
        *,
        size: int,
        etag: str,
        content: AsyncIterable[bytes] | None = None,
    ) -> None:
        """Take the object ``key`` (``size`` bytes, stored already) as the file, instead of
        `write`: no byte is copied. ``content``, when the bytes must be checked, is those
        bytes, read once, as for `seal`. The object is not this upload's: if the upload
        fails, its record goes but the object stays (the Uploads API's parts, which may be
        assembled again)."""
        self.record = self.record.replace(storage_key=key)
        self._borrowed = True
        blob = await self._checked(content, size)
        self._blob = StoredBlob(size=size, sha256=blob.sha256)
        self._etag = blob.sha256 or etag

    async def _checked(self, content: AsyncIterable[bytes] | None, size: int) -> StoredBlob:
        """For a file assembled inside the storage (`seal`, `compose`): its ``content`` read
        through the size limit, the validators and a hash (the file's SHA-256, which becomes
        its etag), or with no content to check, its ``size`` reserved."""
        if size > self._max_size:
            raise FileTooLarge(self._max_size)
        await self._record_pending()
        if content is None:
            if self._metered_bytes:
                await self._reserve(size)
            return StoredBlob(size=size, sha256="")
        self._start_validators()
        hasher = BlobHasher()
        async for chunk in self._metered(content, self._max_size):
            hasher.update(chunk)
        return hasher.result()

    def _start_validators(self) -> None:
        policy = self._core.policy
        if self._purpose is None:
            wanted = {rules for p in policy.jsonl_rules if (rules := policy.rules_for(p))}
        else:
            wanted = {rules} if (rules := policy.rules_for(self._purpose)) else set()
        self._validators = {rules: JSONLValidator(rules) for rules in wanted}

    async def _metered(self, chunks: AsyncIterable[bytes], limit: int) -> AsyncIterator[bytes]:
        metered_bytes = self._metered_bytes
        strict = self._purpose is not None and self._core.policy.validation == "strict"
        total = 0
        async for chunk in chunks:
            total += len(chunk)
            if total > limit:
                raise FileTooLarge(limit)
            if not self._recorded and total > RECORD_AFTER:
                await self._record_pending()
            if metered_bytes and self._recorded and total > self._reserved:
                await self._reserve(total)
            for validator in self._validators.values():
                validator.feed(chunk)
                if strict and validator.failed:
                    raise InvalidFile(_refusal(validator.finish().message), param="file")
            yield chunk

    async def _record_pending(self) -> None:
        """Write the upload's ``pending`` record (counted against the quota), once."""
        if not self._recorded:
            await self._core.metadata.insert(self.record, quota=self._core.policy.quota)
            self._recorded = True

    async def _reserve(self, total: int) -> None:
        """Reserve quota for ``total`` bytes: a step ahead if the quota allows, else exactly."""
        core, record = self._core, self.record
        quota = core.policy.quota
        needed = total - self._reserved
        for size in (max(needed, QUOTA_STEP), needed):
            if await core.metadata.reserve(record.owner, record.id, size, quota=quota):
                self._reserved += size
                return
        usage = await core.metadata.usage(record.owner)
        assert quota is not None
        raise QuotaExceeded.for_usage(quota.max_files, quota.max_bytes, usage.files)

    async def finish(
        self,
        *,
        purpose: str,
        expires_after: int | None = None,
        idempotency_key: str | None = None,
    ) -> FileObject:
        """Check the file against its purpose's rules, then make it visible.

        With ``idempotency_key``, a file the owner created under the same key within 24 hours
        and still visible is returned instead, and this upload is discarded; once that file
        has expired or been deleted, this upload's file takes the key.
        """
        core = self._core
        check_purpose(core.policy, purpose, system=self._system)
        check_expires_after(expires_after)
        check_file_type(core.policy, purpose, self.record.filename, self.record.media_type)
        if self._blob is None:
            raise InvalidRequest("The upload has no file.", param="file")
        limit = core.policy.max_size_for(purpose)
        if self._blob.size > limit and not self._own_limit:
            raise FileTooLarge(limit)
        status, details = self._verdict(purpose)
        now = core.now()
        record = self.record.replace(
            purpose=purpose,
            bytes=self._blob.size,
            sha256=self._blob.sha256 or None,
            etag=self._etag,
            status=status,
            status_details=details,
            expires_at=core.expires_at(self.record, purpose, expires_after),
            changed_at=now,
        )
        try:
            if self._recorded:
                created_id = await core.metadata.commit(
                    record, idempotency_key=idempotency_key, key_since=now - IDEMPOTENCY_WINDOW
                )
            elif self._inline is not None:  # a small file and its bytes, in one transaction
                created_id = await core.inline_files.insert_inline(
                    record.replace(state="active"),
                    self._inline,
                    quota=self._quota,
                    idempotency_key=idempotency_key,
                    key_since=now - IDEMPOTENCY_WINDOW,
                )
            else:  # a small file, stored already: recorded active in one step
                created_id = await core.metadata.insert(
                    record.replace(state="active"),
                    quota=self._quota,
                    idempotency_key=idempotency_key,
                    key_since=now - IDEMPOTENCY_WINDOW,
                )
        except (QuotaExceeded, Conflict):
            raise  # refused: nothing changed
        except BaseException:
            # The write may have taken effect even though its reply was lost: the file may
            # be visible. `abort` must hide it before its bytes go.
            self._maybe_committed = True
            raise
        if created_id != record.id:
            await self.abort()
            return await core.retrieve(record.owner, created_id)
        self._finished = True
        self.record = record.replace(state="active")
        created = file_object(self.record)
        await core.emit("created", self.record.owner, created)
        return created

    def _verdict(self, purpose: str) -> tuple[str, str | None]:
        """The file's status and status details under its purpose's JSONL rules."""
        policy = self._core.policy
        if policy.validation == "deferred" and purpose in policy.jsonl_rules:
            return "uploaded", None  # until FilesService.validate checks it
        rules = policy.rules_for(purpose)
        if rules is None:
            return "processed", None
        result = self._validators[rules].finish()
        if result.ok:
            return "processed", None
        if policy.validation == "strict":
            raise InvalidFile(_refusal(result.message), param="file")
        return "error", result.message

    async def abort(self) -> None:
        """Remove whatever this upload stored; safe to call more than once."""
        self._finished = True
        core, record = self._core, self.record
        with anyio.CancelScope(shield=True):
            if self._maybe_committed:
                try:
                    await core.metadata.begin_delete(record.owner, record.id, now=core.now())
                except Exception:
                    # Unknown whether the file is visible: keep its bytes. If the write did
                    # not happen, the pending record (or, for a small file, the orphan sweep)
                    # leads the sweeper to them.
                    log.warning("could not hide %s after a failed commit; kept", record.id)
                    return
            if self._borrowed and (self._recorded or self._maybe_committed):
                try:
                    await core.metadata.remove(record.owner, record.id)
                except Exception:  # the sweeper removes the pending record, with the bytes
                    log.warning("removing the record of %s failed; the sweeper will", record.id)
            elif self._recorded or self._maybe_committed:
                await core.purge(record)
            elif self._blob is not None and self._inline is None:  # stored, never recorded
                try:
                    await core.storage.delete(record.storage_key)
                except Exception:
                    log.warning("removing the unrecorded bytes of %s failed; kept", record.id)


async def _first_bytes(
    chunks: AsyncIterator[bytes], most: int
) -> tuple[list[bytes], AsyncIterator[bytes] | None]:
    """The chunks of ``chunks`` up to the first that passes ``most`` bytes in all, and the
    iterator of the rest; None for the rest when every chunk was read within ``most``."""
    first: list[bytes] = []
    total = 0
    async for chunk in chunks:
        first.append(chunk)
        total += len(chunk)
        if total > most:
            return first, chunks
    return first, None


def _refusal(message: str | None) -> str:
    return f"The file is not valid for its purpose: {message}"
