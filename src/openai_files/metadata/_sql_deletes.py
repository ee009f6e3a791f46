"""The SQL store's deletes, holds and sweep claims on file records: each a conditional update
whose row count says who won, so that a delete, a hold and a sweeper contend for the same row."""

from __future__ import annotations

import builtins
from functools import partial
from typing import Any

from sqlalchemy import Connection, and_, delete, insert, select, update

from ..errors import Conflict
from ._sql_engine import Rollback
from ._sql_files import SQLFileRecords, file_record
from .base import FileRecord

__all__ = ["SQLFileDeletes"]


class SQLFileDeletes(SQLFileRecords):
    """The delete, hold and sweep methods of `SQLMetadataStore`."""

    # -- deletes and holds -------------------------------------------------------------------

    async def begin_delete(self, owner: str, file_id: str, *, now: int) -> FileRecord | None:
        """A conditional UPDATE first (visible and unheld), returning the row where the database
        can (else read back), so concurrent deleters and holders serialise on the row's lock;
        the usage row shrinks in the same transaction. On PostgreSQL the three are one
        statement (`OneStatementWrites.mark_deleting_counted`); when it marks nothing, the
        transaction runs and says why (held: `Conflict`; not visible: None)."""
        statements = self._statements
        mine = {"b_id": file_id, "b_owner": owner, "now": now}
        returning = self.engine.dialect.update_returning  # not on MariaDB: read it back
        if self._one_statement is not None:
            rows = await self._written(self._one_statement.mark_deleting_counted(), mine)
            if rows:
                return file_record(rows[0][: len(self._files.c)])

        def mark(connection: Connection) -> FileRecord | None:
            # Write first: the conditional update takes the row's lock before anything is read,
            # so concurrent deleters and holders serialise on it instead of racing.
            marked = connection.execute(statements.mark_deleting(returning), mine)
            row = marked.first() if returning else None
            done = row is not None if returning else marked.rowcount == 1
            if not done:
                if connection.execute(statements.visible_id(), mine).first():
                    raise Conflict(
                        f"The file {file_id} is in use by a batch and cannot be deleted now."
                    )
                return None
            if row is None:
                row = connection.execute(statements.owned(), mine).one()
            record = file_record(row)
            self._add_usage(connection, owner, -1, -record.bytes, None)
            self._count_active(connection, record, -1)
            return record

        return await self._write(mark)

    async def remove(self, owner: str, file_id: str, *, keep_record: bool = False) -> None:
        """Delete (or mark ``deleted``) the row only if it is still as read, its holds and its
        share of the usage with it, in one transaction. A ``deleting`` row (a delete's or a
        sweeper's) holds no share of the usage, no count of active files and no hold: it goes
        in one conditional statement, and only another state is read first. On PostgreSQL and
        MariaDB that statement runs outside a transaction first, committed on its own."""
        files, holds, statements = self._files, self.tables.holds, self._statements
        mine = {"b_id": file_id, "b_owner": owner}
        finish = statements.finish_deleting(keep_record)
        if self._one_statement is not None:  # on the driver directly
            counted = self._one_statement.finish_deleting_counted(keep_record)
            rows = await self._written(counted, mine)
            if rows is not None and rows[0][0] == 1:
                return
        elif await self._changed_alone(finish, mine) == 1:
            return

        def drop(connection: Connection) -> None:
            if connection.execute(finish, mine).rowcount == 1:
                return
            row = connection.execute(statements.owned(), mine).first()
            if row is None:
                return
            record = file_record(row)
            if keep_record:
                seen = and_(
                    files.c.id == file_id,
                    files.c.owner == owner,
                    files.c.state == record.state,
                    files.c.bytes == record.bytes,
                )
                change = connection.execute(
                    update(files).where(seen).values(state="deleted", status="deleted")
                )
            else:
                seen_as = {**mine, "b_state": record.state, "b_bytes": record.bytes}
                change = connection.execute(statements.drop(), seen_as)
            if change.rowcount != 1:
                raise Rollback(None)  # it changed under us; whoever changed it carries on
            if record.counts_against_quota:
                self._add_usage(connection, owner, -1, -record.bytes, None)
            if record.state == "active":
                self._count_active(connection, record, -1)
            if not keep_record and record.hold_count:
                connection.execute(delete(holds).where(holds.c.file_id == file_id))

        await self._write(drop)

    async def hold(self, owner: str, file_id: str, holder: str, *, now: int) -> bool:
        """Count the hold on the visible row and add a holds row; rolled back if the holder
        holds it already."""
        files, holds = self._files, self.tables.holds
        mine = and_(files.c.id == file_id, files.c.owner == owner)

        def take(connection: Connection) -> bool:
            counted = connection.execute(
                update(files)
                .where(mine, self._visible(now))
                .values(hold_count=files.c.hold_count + 1)
            )
            if counted.rowcount != 1:
                return False
            existing = select(holds.c.holder).where(
                holds.c.file_id == file_id, holds.c.holder == holder
            )
            if connection.execute(existing).first() is not None:
                raise Rollback(True)  # held by this holder already: undo the count
            connection.execute(insert(holds).values(file_id=file_id, holder=holder, created_at=now))
            return True

        return await self._write(take)

    async def release(self, owner: str, file_id: str, holder: str) -> bool:
        """Delete the holds row and decrement the row's ``hold_count`` in one transaction."""
        files, holds = self._files, self.tables.holds
        mine = and_(files.c.id == file_id, files.c.owner == owner)

        def let_go(connection: Connection) -> bool:
            if connection.execute(select(files.c.id).where(mine)).first() is None:
                return False
            dropped = connection.execute(
                delete(holds).where(holds.c.file_id == file_id, holds.c.holder == holder)
            )
            if dropped.rowcount != 1:
                return False
            connection.execute(update(files).where(mine).values(hold_count=files.c.hold_count - 1))
            return True

        return await self._write(let_go)

    # -- sweeping ---------------------------------------------------------------------------

    async def claim_for_sweep(
        self, *, now: int, stale_before: int, limit: int
    ) -> builtins.list[FileRecord]:
        """Read up to ``limit`` candidates (expired first, then stale), then claim in one
        transaction those that still have no hold and the state and ``changed_at`` they were
        read with (a candidate another sweeper took or changed first is skipped): on PostgreSQL
        and MariaDB a locking read of the candidates by their primary key, in the order of
        their ids (so concurrent sweepers lock rows in one order), then one UPDATE of those
        still as read; on SQLite one UPDATE that checks them and returns what it claimed (a
        read first would make a transaction that another connection's commit can void). The
        usage and the counts of active files shrink once per owner (and purpose) in the same
        transaction: a claim costs the same few statements for a batch of any size."""
        files = self._files
        expired = and_(
            files.c.state == "active",
            files.c.hold_count == 0,
            files.c.expires_at.is_not(None),
            files.c.expires_at <= now,
        )
        stuck = and_(files.c.state.in_(("pending", "deleting")), files.c.changed_at < stale_before)

        def candidates(connection: Connection) -> builtins.list[Any]:
            rows = [*connection.execute(select(files).where(expired).limit(limit)).all()]
            rows += connection.execute(select(files).where(stuck).limit(limit - len(rows))).all()
            return rows

        rows = await self._read(candidates)
        if not rows:
            return []
        return await self._claim([file_record(row) for row in rows], now)

    async def _claim(
        self, candidates: builtins.list[FileRecord], now: int
    ) -> builtins.list[FileRecord]:
        """Take the candidates no other sweeper took or changed first, in one transaction."""
        ordered = sorted(candidates, key=lambda record: record.id)
        return await self._write(partial(self._take, ordered, now))

    def _take(
        self, candidates: builtins.list[FileRecord], now: int, connection: Connection
    ) -> builtins.list[FileRecord]:
        statements = self._statements
        ids = [record.id for record in candidates]
        if self._dialect == "sqlite":  # one statement, the write lock taken before any read
            seen = [(record.id, record.state, record.changed_at) for record in candidates]
            claim = {"b_ids": ids, "b_seen": seen, "now": now}
            taken = set(connection.execute(statements.claim(), claim).scalars())
        else:  # lock the rows, then claim those still as read
            rows = connection.execute(statements.lock_for_claim(), {"b_ids": ids})
            current = {row.id: (row.state, row.changed_at, row.hold_count) for row in rows}
            taken = {
                record.id
                for record in candidates
                if current.get(record.id) == (record.state, record.changed_at, 0)
            }
            if taken:
                connection.execute(statements.claim_ids(), {"b_ids": sorted(taken), "now": now})
        claimed = [record for record in candidates if record.id in taken]
        usage: dict[str, tuple[int, int]] = {}
        active: dict[tuple[str, str], int] = {}
        for record in claimed:
            if record.counts_against_quota:
                files, size = usage.get(record.owner, (0, 0))
                usage[record.owner] = (files + 1, size + record.bytes)
            if record.state == "active":
                key = (record.owner, record.purpose)
                active[key] = active.get(key, 0) + 1
        for owner, (files, size) in sorted(usage.items()):
            self._add_usage(connection, owner, -files, -size, None)
        for (owner, purpose), count in sorted(active.items()):
            connection.execute(
                self._statements.count_active(),
                {"owner": owner, "purpose": purpose, "d_files": -count},
            )
        return claimed
