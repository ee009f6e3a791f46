"""The SQL store's file records: creating files (with their quota and idempotency keys),
reading and listing them, and the conditions and row conversions the file records share."""

from __future__ import annotations

import builtins
import dataclasses
from collections.abc import Sequence
from typing import Any, TypeVar

from sqlalchemy import Connection, and_, delete, insert, or_, select, update
from sqlalchemy.engine import Row
from sqlalchemy.exc import IntegrityError
from sqlalchemy.sql.elements import ColumnElement

from ..errors import BackendUnavailable, Conflict, QuotaExceeded
from ._records import check_keyed
from ._sql_engine import Rollback, SQLEngine, quota_caps, usage_of
from ._sql_runners import Body
from ._sql_statements import visible
from .base import Cursor, FileRecord, Order, Quota, Usage

__all__ = ["SQLFileRecords", "file_record", "file_row"]

_Id = TypeVar("_Id", str, str | None)


class SQLFileRecords(SQLEngine):
    """The file-record methods of `SQLMetadataStore`."""

    # -- creating files -------------------------------------------------------------------------

    async def insert(
        self,
        record: FileRecord,
        *,
        quota: Quota | None = None,
        idempotency_key: str | None = None,
        key_since: int = 0,
    ) -> str:
        """In one transaction: the key looked up (if any), the owner's usage row grown by one
        file under ``quota`` (a conditional update; only when it changes nothing is the row made
        sure of and the update tried again), the row inserted, the key remembered. On MariaDB
        a missing usage row (the owner's first file) is made in a transaction of its own, and
        the insert then runs again: the shared lock an ``INSERT IGNORE`` takes on an existing
        row, held into the update, deadlocks concurrent uploads.
        A concurrent insert or commit under the same key makes the key's primary key refuse the
        second row; that caller answers with the winner's file."""
        return await self._insert(record, None, quota, idempotency_key, key_since)

    async def insert_inline(
        self,
        record: FileRecord,
        data: bytes,
        *,
        quota: Quota | None = None,
        idempotency_key: str | None = None,
        key_since: int = 0,
    ) -> str:
        """`insert`, with ``data`` written to ``file_bytes`` in the same transaction (on
        PostgreSQL, in the same one statement) as the file row (`InlineFiles`)."""
        return await self._insert(record, data, quota, idempotency_key, key_since)

    async def read_inline(self, storage_key: str) -> bytes | None:
        """One read of ``file_bytes``."""
        rows = await self._rows(self._statements.inline_bytes(), {"b_key": storage_key})
        return bytes(rows[0][0]) if rows else None

    async def get_inline(
        self, owner: str, file_id: str, *, now: int
    ) -> tuple[FileRecord, bytes | None] | None:
        """`get`'s one SELECT, joined to ``file_bytes`` by the storage key."""
        parameters = {"file_id": file_id, "owner": owner, "now": now}
        rows = await self._rows(self._statements.get_with_bytes(), parameters)
        if not rows:
            return None
        *columns, data = rows[0]
        return file_record(columns), None if data is None else bytes(data)

    async def delete_inline(self, storage_key: str) -> None:
        """One statement, committed on its own where the runner runs statements so, else in
        a transaction."""
        statement, key = self._statements.delete_bytes(), {"b_key": storage_key}
        if await self._changed_alone(statement, key) is None:
            await self._write(lambda connection: connection.execute(statement, key))

    async def _insert(
        self,
        record: FileRecord,
        data: bytes | None,
        quota: Quota | None,
        idempotency_key: str | None,
        key_since: int,
    ) -> str:
        check_keyed(record, idempotency_key)
        if idempotency_key is None and await self._insert_counted(record, quota, data):
            return record.id
        statements = self._statements

        def create(connection: Connection) -> str | None:
            key = idempotency_key
            if key is not None:
                earlier = self._key_file(
                    connection, record.owner, key, key_since, now=record.changed_at
                )
                if earlier is not None:
                    return earlier
            refused = self._count_in_usage(
                connection,
                record.owner,
                lambda: self._add_usage(connection, record.owner, 1, record.bytes, quota),
            )
            if refused is not None:
                raise QuotaExceeded.for_usage(
                    quota.max_files if quota else None,
                    quota.max_bytes if quota else None,
                    refused.files,
                )
            try:
                self._change(connection, statements.insert_file(), file_row(record))
            except IntegrityError as exc:
                raise Conflict(f"A file with id {record.id} exists already.") from exc
            if record.state == "active":
                self._count_active(connection, record, 1)
            if data is not None:
                kept = {"storage_key": record.storage_key, "data": data}
                self._change(connection, statements.insert_bytes(), kept)
            if key is not None:
                self._remember_key(connection, record, key, key_since)
            return record.id

        async def attempt() -> str | None:
            if idempotency_key is None:
                return await self._write(create)
            return await self._keyed(create, record.owner, idempotency_key, key_since)

        return await self._with_usage_row(record.owner, attempt)

    async def _insert_counted(
        self, record: FileRecord, quota: Quota | None, data: bytes | None
    ) -> bool:
        """On PostgreSQL, `insert` without a key in one statement
        (`OneStatementWrites.insert_counted`, with ``data`` when it is not None):
        True if the owner's usage row was grown under ``quota`` and the row written with its
        count. False if it changed nothing: another database, the owner's first file (no usage
        row yet), a quota that refuses it, or a statement the database refused (an id that
        exists, say); `insert` then does it in a transaction, which says why."""
        if self._one_statement is None:
            return False
        caps = quota_caps(quota, 1, record.bytes)
        query = self._one_statement.insert_counted(
            "max_files" in caps, "max_bytes" in caps, record.state == "active", data is not None
        )
        values = file_row(record) | caps
        if data is not None:
            values["data"] = data
        rows = await self._written(query, values)
        return rows is not None and rows[0][0] == 1

    async def reserve(self, owner: str, file_id: str, size: int, *, quota: Quota | None) -> bool:
        """Grow the usage row under ``quota`` and the pending row's ``bytes`` in one transaction,
        rolled back if the row is no longer pending."""
        files = self._files
        grow_row = (
            update(files)
            .where(files.c.id == file_id, files.c.owner == owner, files.c.state == "pending")
            .values(bytes=files.c.bytes + size)
        )

        def grow(connection: Connection) -> bool:
            if not self._add_usage(connection, owner, 0, size, quota):
                return False
            grown = connection.execute(grow_row)
            if grown.rowcount != 1:
                raise Rollback(False)  # not pending any more: undo the usage too
            return True

        return await self._write(grow)

    async def commit(
        self, record: FileRecord, *, idempotency_key: str | None = None, key_since: int = 0
    ) -> str:
        """One transaction: the key looked up, the row updated only while still ``pending`` with
        the bytes it reserved, the usage corrected, the key row written. A concurrent commit under
        the same key makes the key's primary key refuse the second row; that caller answers with
        the winner's file."""
        key = idempotency_key
        statements = self._statements

        def activate(connection: Connection) -> str:
            now = record.changed_at
            if key is not None:
                earlier = self._key_file(connection, record.owner, key, key_since, now=now)
                if earlier is not None:
                    return earlier
            mine = {"b_id": record.id, "b_owner": record.owner}
            reserved = connection.execute(statements.reserved(), mine).scalar()
            if reserved is None:
                raise Conflict("The upload was abandoned before it completed; upload it again.")
            done = connection.execute(
                statements.activate(),
                {**mine, "reserved": reserved, **file_row(record.replace(state="active"))},
            )
            if done.rowcount != 1:
                raise Conflict("The upload changed while it was completing; upload it again.")
            if record.bytes != reserved:
                self._add_usage(connection, record.owner, 0, record.bytes - reserved, None)
            self._count_active(connection, record, 1)
            if key is not None:
                self._remember_key(connection, record, key, key_since)
            return record.id

        if key is None:
            return await self._write(activate)
        return await self._keyed(activate, record.owner, key, key_since)

    async def _keyed(self, body: Body[_Id], owner: str, key: str, key_since: int) -> _Id | str:
        """Run ``body``, which remembers ``key``, as one write; when a concurrent write under
        the same key won (the key's primary key refused this one), the id of its file."""
        try:
            return await self._write(body, translate_integrity=False)
        except IntegrityError:
            earlier = await self.idempotent_file(owner, key, since=key_since)
            if earlier is None:
                raise BackendUnavailable("The metadata database refused a write; retry.") from None
            return earlier

    def _remember_key(
        self, connection: Connection, record: FileRecord, key: str, key_since: int
    ) -> None:
        """Remember ``key`` for the record's file, in place of a stale row: past the window,
        or whose file is no longer visible (expired, deleted or gone). A fresh row another
        replica just wrote makes the insert fail, and the caller answers with that file."""
        files, keys = self._files, self.tables.idempotency
        live_file = select(files.c.id).where(
            files.c.id == keys.c.file_id, self._visible(record.changed_at)
        )
        connection.execute(
            delete(keys).where(
                keys.c.owner == record.owner,
                keys.c.key == key,
                or_(keys.c.created_at < key_since, ~live_file.exists()),
            )
        )
        connection.execute(
            insert(keys).values(
                owner=record.owner, key=key, file_id=record.id, created_at=record.changed_at
            )
        )

    async def idempotent_file(self, owner: str, key: str, *, since: int) -> str | None:
        """A join of the key row and its ``active`` file row."""
        parameters = {"owner": owner, "key": key, "since": since}
        rows = await self._rows(self._statements.key_file(False), parameters)
        return str(rows[0][0]) if rows else None

    def _key_file(
        self, connection: Connection, owner: str, key: str, since: int, *, now: int
    ) -> str | None:
        """The file of the owner's key, if it is still there and visible at ``now``: after a
        failed, deleted or expired upload the key is free again."""
        query = self._statements.key_file(True)
        parameters = {"owner": owner, "key": key, "since": since, "now": now}
        found: str | None = connection.execute(query, parameters).scalar()
        return found

    # -- reads ------------------------------------------------------------------------------

    async def get(
        self, owner: str, file_id: str, *, now: int, include_deleted: bool = False
    ) -> FileRecord | None:
        """One SELECT by id and owner, with visibility in the WHERE clause."""
        parameters = {"file_id": file_id, "owner": owner, "now": now}
        rows = await self._rows(self._statements.get(include_deleted), parameters)
        return file_record(rows[0]) if rows else None

    async def set_status(
        self, owner: str, file_id: str, *, status: str, details: str | None, now: int
    ) -> FileRecord | None:
        """A conditional UPDATE of the visible row, then the row read back in the same
        transaction."""
        files = self._files
        visible = and_(files.c.id == file_id, files.c.owner == owner, self._visible(now))
        change = update(files).where(visible).values(status=status, status_details=details)

        def update_status(connection: Connection) -> Row[Any] | None:
            # Not rowcount: MySQL counts only rows whose values changed, not rows matched.
            connection.execute(change)
            return connection.execute(select(files).where(visible)).first()

        row = await self._write(update_status)
        return None if row is None else file_record(row)

    async def list(
        self,
        owner: str,
        *,
        now: int,
        purpose: str | None = None,
        after: Cursor | None = None,
        limit: int,
        order: Order = "desc",
    ) -> list[FileRecord]:
        """Keyset pagination: rows past ``after`` on ``(created_us, id)``, in that index's
        order, ``limit`` of them."""
        query = self._statements.page(order, purpose is not None, after is not None)
        parameters: dict[str, Any] = {"owner": owner, "now": now, "limit": limit}
        if purpose is not None:
            parameters["purpose"] = purpose
        if after is not None:
            parameters["after_us"], parameters["after_id"] = after
        rows = await self._rows(query, parameters)
        return [file_record(row) for row in rows]

    async def count(self, owner: str, *, now: int, purpose: str | None = None) -> int:
        """The owner's counts of active files (of ``purpose``), less their files expired and
        not yet swept: one statement that counts no more rows than the sweeper's backlog."""
        query = self._statements.active_total(purpose is not None)
        parameters = {"owner": owner, "now": now, "purpose": purpose}
        rows = await self._rows(query, parameters)
        return int(rows[0][0] or 0)

    async def list_at(
        self,
        owner: str,
        *,
        now: int,
        purpose: str | None = None,
        offset: int,
        limit: int,
        order: Order = "desc",
    ) -> builtins.list[FileRecord]:
        """``OFFSET``/``LIMIT`` over the owner's visible rows, in ``(created_us, id)`` order."""
        query = self._statements.page_at(order, purpose is not None)
        parameters: dict[str, Any] = {"owner": owner, "now": now, "offset": offset, "limit": limit}
        if purpose is not None:
            parameters["purpose"] = purpose
        return [file_record(row) for row in await self._rows(query, parameters)]

    async def usage(self, owner: str) -> Usage:
        """The owner's usage row (zeros if there is none)."""
        rows = await self._rows(self._statements.usage(), {"owner": owner})
        return usage_of(rows[0] if rows else None)

    async def list_usage(
        self, *, after: str | None = None, limit: int
    ) -> builtins.list[tuple[str, Usage]]:
        """A keyset page of the usage rows that are not all zero, by owner (the primary key)."""
        usage = self.tables.usage
        query = select(usage.c.owner, usage.c.files, usage.c.bytes, usage.c.open_uploads).where(
            or_(usage.c.files != 0, usage.c.bytes != 0, usage.c.open_uploads != 0)
        )
        if after is not None:
            query = query.where(usage.c.owner > after)
        query = query.order_by(usage.c.owner.asc()).limit(limit)
        rows = await self._read(lambda connection: connection.execute(query).all())
        return [
            (row.owner, Usage(files=row.files, bytes=row.bytes, open_uploads=row.open_uploads))
            for row in rows
        ]

    async def existing_keys(self, keys: builtins.list[str]) -> set[str]:
        """``IN`` queries over files and parts, 500 keys at a time."""
        files, parts = self._files, self.tables.parts

        def look_up(connection: Connection) -> set[str]:
            found: set[str] = set()
            for start in range(0, len(keys), 500):
                batch = keys[start : start + 500]
                for column in (files.c.storage_key, parts.c.storage_key):
                    found.update(
                        connection.execute(select(column).where(column.in_(batch))).scalars()
                    )
            return found

        return await self._read(look_up)

    def _count_active(self, connection: Connection, record: FileRecord, change: int) -> None:
        """Move the count of the owner's active files of the record's purpose by ``change``,
        in the transaction that makes the record active or takes it out of that state."""
        parameters = {"owner": record.owner, "purpose": record.purpose, "d_files": change}
        self._change(connection, self._statements.count_active(), parameters)

    def _visible(self, now: int) -> ColumnElement[bool]:
        return visible(self._files, now)


_COLUMNS = (
    "id",
    "owner",
    "purpose",
    "filename",
    "bytes",
    "created_us",
    "expires_at",
    "status",
    "status_details",
    "storage_key",
    "sha256",
    "media_type",
    "state",
    "changed_at",
    "hold_count",
    "etag",
)


def file_row(record: FileRecord) -> dict[str, Any]:
    return {name: getattr(record, name) for name in _COLUMNS}


def file_record(row: Sequence[Any]) -> FileRecord:
    """The record of a row of every column of the files table, in the table's order.

    Made as the dataclass's own ``__init__`` would, without its cost: a frozen dataclass sets
    each field through ``object.__setattr__``, six times slower than filling the instance's
    dictionary, which is what it amounts to for `FileRecord` (no slots, no ``__post_init__``;
    both checked when this module is imported, with the order of the fields).
    """
    record = object.__new__(FileRecord)
    record.__dict__.update(zip(_COLUMNS, row, strict=True))
    return record


if (
    tuple(field.name for field in dataclasses.fields(FileRecord)) != _COLUMNS
    or hasattr(FileRecord, "__slots__")
    or hasattr(FileRecord, "__post_init__")
):
    raise AssertionError("FileRecord is not made of the files table's columns, in order")
