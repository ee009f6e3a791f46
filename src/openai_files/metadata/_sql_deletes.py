"""The SQL store's deletes, holds and sweep claims on file records: each a conditional update
whose row count says who won, so that a delete, a hold and a sweeper contend for the same row."""

from __future__ import annotations

import builtins

from sqlalchemy import and_, delete, insert, select, update

from ..errors import Conflict
from ._sql_engine import Rollback
from ._sql_files import SQLFileRecords, file_record
from .base import FileRecord

__all__ = ["SQLFileDeletes"]


class SQLFileDeletes(SQLFileRecords):
    """The delete, hold and sweep methods of `SQLMetadataStore`."""

    # -- deletes and holds -------------------------------------------------------------------

    async def begin_delete(self, owner: str, file_id: str, *, now: int) -> FileRecord | None:
        """A conditional UPDATE first (visible and unheld), so concurrent deleters and holders
        serialise on the row's lock; the usage row shrinks in the same transaction."""
        files = self._files
        mine = and_(files.c.id == file_id, files.c.owner == owner, self._visible(now))
        async with self._transaction() as connection:
            # Write first: the conditional update takes the row's lock before anything is read,
            # so concurrent deleters and holders serialise on it instead of racing.
            result = await connection.execute(
                update(files)
                .where(mine, files.c.hold_count == 0)
                .values(state="deleting", changed_at=now)
            )
            if result.rowcount != 1:
                if (await connection.execute(select(files.c.id).where(mine))).first():
                    raise Conflict(
                        f"The file {file_id} is in use by a batch and cannot be deleted now."
                    )
                return None
            row = (await connection.execute(select(files).where(files.c.id == file_id))).one()
            record = file_record(row)
            await self._add_usage(connection, owner, -1, -record.bytes, None)
        return record

    async def remove(self, owner: str, file_id: str, *, keep_record: bool = False) -> None:
        """Delete (or mark ``deleted``) the row only if it is still as read, its holds and its
        share of the usage with it, in one transaction."""
        files, holds = self._files, self.tables.holds
        async with self._transaction() as connection:
            mine = and_(files.c.id == file_id, files.c.owner == owner)
            row = (await connection.execute(select(files).where(mine))).first()
            if row is None:
                return
            record = file_record(row)
            seen = and_(mine, files.c.state == record.state, files.c.bytes == record.bytes)
            change = (
                update(files).where(seen).values(state="deleted", status="deleted")
                if keep_record
                else delete(files).where(seen)
            )
            if (await connection.execute(change)).rowcount != 1:
                raise Rollback  # it changed under us; whoever changed it carries on
            if record.counts_against_quota:
                await self._add_usage(connection, owner, -1, -record.bytes, None)
            if not keep_record:
                await connection.execute(delete(holds).where(holds.c.file_id == file_id))

    async def hold(self, owner: str, file_id: str, holder: str, *, now: int) -> bool:
        """Count the hold on the visible row and add a holds row; rolled back if the holder
        holds it already."""
        files, holds = self._files, self.tables.holds
        mine = and_(files.c.id == file_id, files.c.owner == owner)
        async with self._transaction() as connection:
            counted = await connection.execute(
                update(files)
                .where(mine, self._visible(now))
                .values(hold_count=files.c.hold_count + 1)
            )
            if counted.rowcount != 1:
                return False
            existing = select(holds.c.holder).where(
                holds.c.file_id == file_id, holds.c.holder == holder
            )
            if (await connection.execute(existing)).first() is not None:
                raise Rollback  # held by this holder already: undo the count
            await connection.execute(
                insert(holds).values(file_id=file_id, holder=holder, created_at=now)
            )
        return True

    async def release(self, owner: str, file_id: str, holder: str) -> bool:
        """Delete the holds row and decrement the row's ``hold_count`` in one transaction."""
        files, holds = self._files, self.tables.holds
        mine = and_(files.c.id == file_id, files.c.owner == owner)
        async with self._transaction() as connection:
            if (await connection.execute(select(files.c.id).where(mine))).first() is None:
                return False
            dropped = await connection.execute(
                delete(holds).where(holds.c.file_id == file_id, holds.c.holder == holder)
            )
            if dropped.rowcount != 1:
                return False
            await connection.execute(
                update(files).where(mine).values(hold_count=files.c.hold_count - 1)
            )
            return True

    # -- sweeping ---------------------------------------------------------------------------

    async def claim_for_sweep(
        self, *, now: int, stale_before: int, limit: int
    ) -> builtins.list[FileRecord]:
        """Read up to ``limit`` candidates (expired first, then stale), then claim each with a
        conditional UPDATE on its state and ``changed_at``: a candidate another sweeper took first
        is skipped."""
        files = self._files
        expired = and_(
            files.c.state == "active",
            files.c.hold_count == 0,
            files.c.expires_at.is_not(None),
            files.c.expires_at <= now,
        )
        stuck = and_(files.c.state.in_(("pending", "deleting")), files.c.changed_at < stale_before)
        async with self._transaction() as connection:
            rows = [*(await connection.execute(select(files).where(expired).limit(limit))).all()]
            rows += (
                await connection.execute(select(files).where(stuck).limit(limit - len(rows)))
            ).all()
        claimed = []
        for candidate in (file_record(row) for row in rows):
            if await self._claim(candidate, now):
                claimed.append(candidate)
        return claimed

    async def _claim(self, record: FileRecord, now: int) -> bool:
        """Take one candidate for this sweeper, unless another took or changed it first."""
        files = self._files
        async with self._transaction() as connection:
            taken = await connection.execute(
                update(files)
                .where(
                    files.c.id == record.id,
                    files.c.state == record.state,
                    files.c.changed_at == record.changed_at,
                    files.c.hold_count == 0,
                )
                .values(state="deleting", changed_at=now)
            )
            if taken.rowcount != 1:
                return False
            if record.counts_against_quota:
                await self._add_usage(connection, record.owner, -1, -record.bytes, None)
            return True
