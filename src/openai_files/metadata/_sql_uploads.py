"""The SQL store's upload records (Uploads API): uploads, their parts and their running
totals (bytes received and reserved, parts), which count in the owner's usage row."""

from __future__ import annotations

import builtins
from functools import partial
from typing import Any

from sqlalchemy import Connection, and_, delete, func, insert, select, update
from sqlalchemy.exc import IntegrityError

from ..errors import Conflict, QuotaExceeded
from ._sql_engine import Rollback, SQLEngine
from .base import OPEN_UPLOAD_STATES, PartOutcome, PartRecord, Quota, UploadRecord, UploadState

__all__ = ["PART_BATCH", "SQLUploadRecords"]

PART_BATCH = 500
"""Parts `SQLUploadRecords.remove_parts` removes in one transaction (and one ``IN`` list,
well within every database's bound on bound parameters)."""


class SQLUploadRecords(SQLEngine):
    """The upload-record methods of `SQLMetadataStore`."""

    async def create_upload(self, upload: UploadRecord, *, max_open: int | None = None) -> None:
        """In one transaction: the upload counted in the owner's ``open_uploads`` (a
        conditional update against ``max_open``; only when it changes nothing is the usage row
        made sure of and the update tried again), and the row inserted. On MariaDB a missing
        usage row is made in a transaction of its own, as in `insert`, and the upload is
        opened again."""
        usage = self.tables.usage
        counted = update(usage).where(usage.c.owner == upload.owner)
        if max_open is not None:
            counted = counted.where(usage.c.open_uploads < max_open)
        counted = counted.values(open_uploads=usage.c.open_uploads + 1)
        fresh = upload.replace(received=0, part_count=0, reserved=0, multipart=None, part_numbers=0)

        def open_upload(connection: Connection) -> bool | None:
            def count() -> bool:
                return connection.execute(counted).rowcount == 1

            if self._count_in_usage(connection, upload.owner, count) is not None:
                assert max_open is not None
                raise QuotaExceeded.for_open_uploads(max_open)
            try:
                connection.execute(insert(self.tables.uploads).values(**vars(fresh)))
            except IntegrityError as exc:
                raise Conflict(f"An upload with id {upload.id} exists already.") from exc
            return True

        await self._with_usage_row(upload.owner, partial(self._write, open_upload))

    async def get_upload(self, owner: str, upload_id: str) -> UploadRecord | None:
        """One SELECT by id and owner."""
        parameters = {"upload_id": upload_id, "owner": owner}
        rows = await self._rows(self._statements.upload(), parameters)
        columns = self.tables.uploads.c.keys()
        return UploadRecord(**dict(zip(columns, rows[0], strict=True))) if rows else None

    async def move_upload(
        self,
        owner: str,
        upload_id: str,
        *,
        from_states: tuple[UploadState, ...],
        to: UploadState,
        file_id: str | None = None,
    ) -> bool:
        """A conditional UPDATE on the state; closing the upload settles its reservation in the
        usage row, in the same transaction."""
        return await self._write(
            lambda connection: self._move_upload(
                connection, owner, upload_id, from_states, to, file_id
            )
        )

    def _move_upload(
        self,
        connection: Connection,
        owner: str,
        upload_id: str,
        from_states: tuple[UploadState, ...],
        to: UploadState,
        file_id: str | None = None,
        *,
        expired_at: int | None = None,
    ) -> bool:
        """`move_upload` inside ``connection``'s transaction (only if it expired by
        ``expired_at``, when given)."""
        uploads = self.tables.uploads
        opened = [state in OPEN_UPLOAD_STATES for state in from_states]
        if any(opened) and not all(opened):
            raise ValueError("move_upload: from_states must be all open or all closed")
        closes = all(opened) and to not in OPEN_UPLOAD_STATES
        mine = and_(uploads.c.id == upload_id, uploads.c.owner == owner)
        values: dict[str, Any] = {"state": to}
        if file_id is not None:
            values["file_id"] = file_id
        # Write first: the update locks the row, so the totals read next cannot change.
        change = update(uploads).where(mine, uploads.c.state.in_(from_states))
        if expired_at is not None:
            change = change.where(uploads.c.expires_at <= expired_at)
        if connection.execute(change.values(**values)).rowcount != 1:
            return False
        if closes:
            totals = select(uploads.c.reserved, uploads.c.received).where(mine)
            row = connection.execute(totals).one()
            connection.execute(update(uploads).where(mine).values(reserved=row.received))
            self._add_usage(
                connection, owner, 0, row.received - row.reserved, None, open_uploads=-1
            )
        return True

    async def reserve_upload(
        self, owner: str, upload_id: str, size: int, *, quota: Quota | None
    ) -> bool:
        """Grow the pending upload's ``reserved`` and the usage row under ``quota`` in one
        transaction, rolled back if the quota refuses."""
        uploads = self.tables.uploads

        def grow(connection: Connection) -> bool:
            grown = connection.execute(
                update(uploads)
                .where(
                    uploads.c.id == upload_id,
                    uploads.c.owner == owner,
                    uploads.c.state == "pending",
                )
                .values(reserved=uploads.c.reserved + size)
            )
            if grown.rowcount != 1:
                return False
            if not self._add_usage(connection, owner, 0, size, quota):
                raise Rollback(False)  # over the quota: undo the upload's share too
            return True

        return await self._write(grow)

    async def claim_part_numbers(
        self, owner: str, upload_id: str, count: int, *, multipart: str, limit: int
    ) -> tuple[str, int] | None:
        """One conditional UPDATE (pending, within ``limit``) locks the row and claims the
        numbers, then the row is read back in the same transaction."""
        uploads = self.tables.uploads
        mine = and_(uploads.c.id == upload_id, uploads.c.owner == owner)
        claim = (
            update(uploads)
            .where(
                mine,
                uploads.c.state == "pending",
                uploads.c.part_numbers + count <= limit,
            )
            .values(
                part_numbers=uploads.c.part_numbers + count,
                multipart=func.coalesce(uploads.c.multipart, multipart),
            )
        )
        claimed = select(uploads.c.multipart, uploads.c.part_numbers).where(mine)

        def take(connection: Connection) -> tuple[str, int] | None:
            if connection.execute(claim).rowcount != 1:
                return None
            row = connection.execute(claimed).one()
            return str(row.multipart), int(row.part_numbers) - count + 1

        return await self._write(take)

    async def release_upload(self, owner: str, upload_id: str, size: int) -> None:
        """Shrink the open upload's ``reserved`` and the usage row in one transaction."""
        await self._write(
            lambda connection: self._release_upload(connection, owner, upload_id, size)
        )

    def _release_upload(
        self, connection: Connection, owner: str, upload_id: str, size: int
    ) -> None:
        uploads = self.tables.uploads
        if size == 0:
            return
        shrunk = connection.execute(
            update(uploads)
            .where(
                uploads.c.id == upload_id,
                uploads.c.owner == owner,
                uploads.c.state.in_(OPEN_UPLOAD_STATES),
            )
            .values(reserved=uploads.c.reserved - size)
        )
        if shrunk.rowcount == 1:
            self._add_usage(connection, owner, 0, -size, None)

    async def add_part(
        self, part: PartRecord, *, reserved: int = 0, max_parts: int | None = None
    ) -> PartOutcome:
        """One conditional UPDATE of the upload's totals (pending, within the declared bytes
        and ``max_parts``) locks its row, then the part row is inserted; when the update matches
        nothing, the reservation is released and the upload read to say why."""
        uploads, parts = self.tables.uploads, self.tables.parts
        mine = and_(uploads.c.id == part.upload_id, uploads.c.owner == part.owner)
        fits = [uploads.c.state == "pending", uploads.c.received + part.bytes <= uploads.c.bytes]
        if max_parts is not None:
            fits.append(uploads.c.part_count < max_parts)

        def count_in(connection: Connection) -> PartOutcome | None:
            # Counted first: the update locks the upload row, so a part cannot slip in while
            # the upload completes, and concurrent parts take their turns on the totals.
            counted = connection.execute(
                update(uploads)
                .where(mine, *fits)
                .values(
                    received=uploads.c.received + part.bytes,
                    part_count=uploads.c.part_count + 1,
                    reserved=uploads.c.reserved - reserved + part.bytes,
                )
            )
            if counted.rowcount == 1:
                connection.execute(insert(parts).values(**vars(part)))
                if part.bytes != reserved:
                    self._add_usage(connection, part.owner, 0, part.bytes - reserved, None)
                return "added"
            self._release_upload(connection, part.owner, part.upload_id, reserved)
            query = select(uploads.c.state, uploads.c.received, uploads.c.bytes).where(mine)
            row = connection.execute(query).first()
            if row is None or row.state != "pending":
                return "not_pending"
            if row.received + part.bytes > row.bytes:
                return "over_declared_bytes"
            return "over_part_limit"

        outcome = await self._write(count_in)
        assert outcome is not None
        return outcome

    async def get_parts(self, owner: str, upload_id: str) -> builtins.list[PartRecord]:
        """One SELECT by upload and owner."""
        parameters = {"upload_id": upload_id, "owner": owner}
        rows = await self._rows(self._statements.upload_parts(), parameters)
        columns = self.tables.parts.c.keys()
        return [PartRecord(**dict(zip(columns, row, strict=True))) for row in rows]

    async def expire_uploads(self, *, now: int) -> int:
        """Read open uploads past their expiry 100 at a time and move each in a transaction
        of its own."""
        uploads, batch = self.tables.uploads, 100
        # A completion that died half-way expires too, so its parts are discarded.
        due = (
            select(uploads.c.owner, uploads.c.id)
            .where(uploads.c.state.in_(OPEN_UPLOAD_STATES), uploads.c.expires_at <= now)
            .limit(batch)
        )
        expired = 0
        while True:
            candidates = await self._read(lambda connection: connection.execute(due).all())
            for owner, upload_id in candidates:
                expired += await self._write(partial(self._expire, owner, upload_id, now))
            if len(candidates) < batch:
                return expired

    def _expire(self, owner: str, upload_id: str, now: int, connection: Connection) -> bool:
        """Move the open upload to ``expired`` if it expired by ``now``."""
        return self._move_upload(
            connection, owner, upload_id, OPEN_UPLOAD_STATES, "expired", expired_at=now
        )

    async def finished_parts(self, *, limit: int) -> builtins.list[PartRecord]:
        """Parts whose upload is closed, in one SELECT."""
        uploads, parts = self.tables.uploads, self.tables.parts
        done = select(uploads.c.id).where(
            uploads.c.state.in_(("completed", "cancelled", "expired"))
        )
        query = select(parts).where(parts.c.upload_id.in_(done)).limit(limit)
        rows = await self._read(lambda connection: connection.execute(query).all())
        return [PartRecord(**row._mapping) for row in rows]

    async def remove_parts(self, part_ids: builtins.list[str]) -> None:
        """`remove_part` for each part (`PartBatches`), `PART_BATCH` parts per transaction:
        one SELECT and one DELETE of the parts, then one UPDATE of each upload's totals and of
        each owner's usage. Parts removed meanwhile by another request are left to it: the
        batch is rolled back and its parts removed one at a time."""
        uploads, parts = self.tables.uploads, self.tables.parts

        def drop(batch: builtins.list[str], connection: Connection) -> bool:
            rows = connection.execute(select(parts).where(parts.c.id.in_(batch))).all()
            found = [PartRecord(**row._mapping) for row in rows]
            if not found:
                return True
            removed = connection.execute(delete(parts).where(parts.c.id.in_(batch))).rowcount
            if removed != len(found):
                raise Rollback(False)  # removed meanwhile, by whoever counts it out
            totals: dict[str, tuple[int, int]] = {}
            usage: dict[str, int] = {}
            for part in found:
                count, size = totals.get(part.upload_id, (0, 0))
                totals[part.upload_id] = (count + 1, size + part.bytes)
                usage[part.owner] = usage.get(part.owner, 0) + part.bytes
            for upload_id, (count, size) in totals.items():
                connection.execute(
                    update(uploads)
                    .where(uploads.c.id == upload_id)
                    .values(
                        received=uploads.c.received - size,
                        part_count=uploads.c.part_count - count,
                        reserved=uploads.c.reserved - size,
                    )
                )
            for owner, size in usage.items():
                self._add_usage(connection, owner, 0, -size, None)
            return True

        for start in range(0, len(part_ids), PART_BATCH):
            batch = part_ids[start : start + PART_BATCH]
            if not await self._write(partial(drop, batch)):
                for part_id in batch:
                    await self.remove_part(part_id)

    async def remove_part(self, part_id: str) -> None:
        """Delete the part row and take its bytes out of its upload's totals and the usage row,
        in one transaction."""
        uploads, parts = self.tables.uploads, self.tables.parts

        def drop(connection: Connection) -> None:
            row = connection.execute(select(parts).where(parts.c.id == part_id)).first()
            if row is None:
                return
            part = PartRecord(**row._mapping)
            if connection.execute(delete(parts).where(parts.c.id == part_id)).rowcount != 1:
                raise Rollback(None)  # removed meanwhile, by whoever counts it out
            connection.execute(
                update(uploads)
                .where(uploads.c.id == part.upload_id)
                .values(
                    received=uploads.c.received - part.bytes,
                    part_count=uploads.c.part_count - 1,
                    reserved=uploads.c.reserved - part.bytes,
                )
            )
            self._add_usage(connection, part.owner, 0, -part.bytes, None)

        await self._write(drop)
