"""The upload records (Uploads API) of `MemoryMetadataStore`: uploads and their parts in dicts,
their running totals (bytes received and reserved, parts) kept in each upload's record."""

from __future__ import annotations

import builtins
from abc import ABC, abstractmethod

from ..errors import Conflict, QuotaExceeded
from .base import (
    OPEN_UPLOAD_STATES,
    PartOutcome,
    PartRecord,
    Quota,
    UploadRecord,
    UploadState,
    Usage,
)

__all__ = ["MemoryUploadRecords"]


class MemoryUploadRecords(ABC):
    """The upload-record methods of `MemoryMetadataStore`. Every method runs without awaiting
    anything, so on one event loop each is atomic. The reservations they make count in the
    owner's usage, which the store counts from its files and these uploads (`_usage`)."""

    def __init__(self) -> None:
        self._uploads: dict[str, UploadRecord] = {}
        self._parts: dict[str, PartRecord] = {}

    @abstractmethod
    def _usage(self, owner: str) -> Usage:
        """The owner's usage: the store's own, which counts its files and these uploads."""

    def _fits(self, owner: str, size: int, quota: Quota | None) -> bool:
        """Whether ``size`` more bytes of the owner's stay within ``quota`` (None: no bound)."""
        if quota is None:
            return True
        usage = self._usage(owner)
        return quota.allows(usage.files, usage.bytes + size)

    async def create_upload(self, upload: UploadRecord, *, max_open: int | None = None) -> None:
        """Keep the upload in a dict, its running totals at zero; open uploads are counted from
        the dict against ``max_open``."""
        if upload.id in self._uploads:
            raise Conflict(f"An upload with id {upload.id} exists already.")
        if max_open is not None and self._usage(upload.owner).open_uploads >= max_open:
            raise QuotaExceeded.for_open_uploads(max_open)
        self._uploads[upload.id] = upload.replace(
            received=0, part_count=0, reserved=0, multipart=None, part_numbers=0
        )

    async def get_upload(self, owner: str, upload_id: str) -> UploadRecord | None:
        """One dict lookup."""
        upload = self._uploads.get(upload_id)
        return upload if upload is not None and upload.owner == owner else None

    async def move_upload(
        self,
        owner: str,
        upload_id: str,
        *,
        from_states: tuple[UploadState, ...],
        to: UploadState,
        file_id: str | None = None,
    ) -> bool:
        """Replace the upload with one in state ``to``; closing it settles its reservation to
        the bytes its parts hold."""
        upload = await self.get_upload(owner, upload_id)
        if upload is None or upload.state not in from_states:
            return False
        moved = upload.replace(state=to, file_id=file_id or upload.file_id)
        if upload.is_open and not moved.is_open:
            moved = moved.replace(reserved=upload.received)
        self._uploads[upload_id] = moved
        return True

    async def claim_part_numbers(
        self, owner: str, upload_id: str, count: int, *, multipart: str, limit: int
    ) -> tuple[str, int] | None:
        """Replace the pending upload with one whose ``part_numbers`` grew by ``count``."""
        upload = await self.get_upload(owner, upload_id)
        if upload is None or upload.state != "pending" or upload.part_numbers + count > limit:
            return None
        claimed = upload.replace(
            multipart=upload.multipart or multipart, part_numbers=upload.part_numbers + count
        )
        self._uploads[upload_id] = claimed
        assert claimed.multipart is not None
        return claimed.multipart, upload.part_numbers + 1

    async def reserve_upload(
        self, owner: str, upload_id: str, size: int, *, quota: Quota | None
    ) -> bool:
        """Grow the pending upload's ``reserved``, which the usage counts, if ``quota`` allows."""
        upload = await self.get_upload(owner, upload_id)
        if upload is None or upload.state != "pending" or not self._fits(owner, size, quota):
            return False
        self._uploads[upload_id] = upload.replace(reserved=upload.reserved + size)
        return True

    async def release_upload(self, owner: str, upload_id: str, size: int) -> None:
        """Shrink the open upload's ``reserved``."""
        upload = await self.get_upload(owner, upload_id)
        if upload is not None and upload.is_open:
            self._uploads[upload_id] = upload.replace(reserved=upload.reserved - size)

    async def add_part(
        self, part: PartRecord, *, reserved: int = 0, max_parts: int | None = None
    ) -> PartOutcome:
        """Check the upload's state, declared bytes and part count, then keep the part and
        update the totals; nothing is awaited in between, so concurrent parts take turns."""
        upload = await self.get_upload(part.owner, part.upload_id)
        if upload is None:
            return "not_pending"
        outcome: PartOutcome = "added"
        if upload.state != "pending":
            outcome = "not_pending"
        elif upload.received + part.bytes > upload.bytes:
            outcome = "over_declared_bytes"
        elif max_parts is not None and upload.part_count >= max_parts:
            outcome = "over_part_limit"
        if outcome != "added":
            await self.release_upload(part.owner, part.upload_id, reserved)
            return outcome
        self._parts[part.id] = part
        self._uploads[upload.id] = upload.replace(
            received=upload.received + part.bytes,
            part_count=upload.part_count + 1,
            reserved=upload.reserved - reserved + part.bytes,
        )
        return outcome

    async def get_parts(self, owner: str, upload_id: str) -> builtins.list[PartRecord]:
        """Scan every part for the upload's."""
        return [p for p in self._parts.values() if p.upload_id == upload_id and p.owner == owner]

    async def expire_uploads(self, *, now: int) -> int:
        """Scan every upload and move those open past their expiry to ``expired``."""
        expired = [
            u
            for u in self._uploads.values()
            if u.state in OPEN_UPLOAD_STATES and now >= u.expires_at
        ]
        for upload in expired:
            await self.move_upload(
                upload.owner, upload.id, from_states=OPEN_UPLOAD_STATES, to="expired"
            )
        return len(expired)

    async def finished_parts(self, *, limit: int) -> builtins.list[PartRecord]:
        """Scan every part for those of closed uploads."""
        done = {"completed", "cancelled", "expired"}
        return [p for p in self._parts.values() if self._uploads[p.upload_id].state in done][:limit]

    async def remove_parts(self, part_ids: builtins.list[str]) -> None:
        """`remove_part` for each (`PartBatches`); nothing awaits in between, so it is one
        step for every other task."""
        for part_id in part_ids:
            self._remove_part(part_id)

    async def remove_part(self, part_id: str) -> None:
        """Drop the part and take its bytes out of its upload's totals."""
        self._remove_part(part_id)

    def _remove_part(self, part_id: str) -> None:
        part = self._parts.pop(part_id, None)
        upload = None if part is None else self._uploads.get(part.upload_id)
        if part is not None and upload is not None:
            self._uploads[upload.id] = upload.replace(
                received=upload.received - part.bytes,
                part_count=upload.part_count - 1,
                reserved=upload.reserved - part.bytes,
            )
