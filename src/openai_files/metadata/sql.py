"""`SQLMetadataStore`: records in a SQL database through SQLAlchemy Core (async).

One implementation for every database SQLAlchemy drives asynchronously: SQLite (``aiosqlite``,
the embedded default, in WAL mode), PostgreSQL (``asyncpg``) and MariaDB/MySQL (``aiomysql``).
Every invariant is enforced by the database, never by locks in this process, so replicas can
share one database: state changes are conditional updates whose row count says who won, a
quota is one conditional update of the owner's usage row, and a hold and a delete contend for
the same file row. The tables are described in `openai_files.metadata.sql_schema`; they are
created on first use and their version recorded; tables of an older version are upgraded in
place at start (`openai_files.metadata.sql_migrations`).
"""

from __future__ import annotations

import builtins
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any

import anyio
from sqlalchemy import Select, and_, delete, event, func, insert, or_, select, update
from sqlalchemy.engine import Row, make_url
from sqlalchemy.exc import DBAPIError, IntegrityError, SQLAlchemyError, StatementError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.sql.elements import ColumnElement

from ..errors import (
    BackendUnavailable,
    Conflict,
    InvalidRequest,
    OpenAIFilesError,
    QuotaExceeded,
)
from .base import (
    DEFAULT_TABLE_PREFIX,
    OPEN_UPLOAD_STATES,
    Cursor,
    FileRecord,
    Order,
    PartOutcome,
    PartRecord,
    Quota,
    UploadRecord,
    UploadState,
    Usage,
)
from .sql_migrations import upgrade
from .sql_schema import SCHEMA_VERSION, Tables, insert_ignoring_duplicates

__all__ = ["SCHEMA_VERSION", "SQLMetadataStore"]


class SQLMetadataStore:
    """File records in SQL tables named with ``table_prefix``.

    Pass a SQLAlchemy URL (``sqlite+aiosqlite:///data/files.db``,
    ``postgresql+asyncpg://user@host/db``, ``mysql+aiomysql://root@host/db``) or an existing
    `AsyncEngine`, so a host application can keep the files tables in its own database. The
    store disposes only an engine it created itself.
    """

    def __init__(
        self,
        url_or_engine: str | AsyncEngine,
        *,
        table_prefix: str = DEFAULT_TABLE_PREFIX,
        engine_options: Mapping[str, Any] | None = None,
    ) -> None:
        if isinstance(url_or_engine, AsyncEngine):
            self.engine, self._owns_engine = url_or_engine, False
        else:
            self.engine, self._owns_engine = _make_engine(url_or_engine, engine_options), True
        self.table_prefix = table_prefix
        self.tables = Tables.named(table_prefix)
        self._files = self.tables.files
        self._dialect = self.engine.dialect.name
        self._ready = False
        self._ready_lock = anyio.Lock()

    def __repr__(self) -> str:
        url = self.engine.url.render_as_string(hide_password=True)
        return f"SQLMetadataStore({url!r}, table_prefix={self.table_prefix!r})"

    # -- schema -----------------------------------------------------------------------------

    async def create_schema(self) -> None:
        """Create the tables if they are missing and check the recorded schema version.

        Safe to call from several processes at once; called on first use by every method.
        """
        async with self._ready_lock:
            if self._ready:
                return
            async with self._translate():
                try:
                    await self._create_tables()
                except DBAPIError:
                    # Another process created them between our check and our CREATE.
                    await self._create_tables()
                await self._check_version()
            self._ready = True

    async def _create_tables(self) -> None:
        async with self.engine.begin() as connection:
            await connection.run_sync(self.tables.metadata.create_all, checkfirst=True)

    async def _check_version(self) -> None:
        """Record the version of tables just created, or upgrade older ones in place."""
        version = self.tables.version
        async with self.engine.connect() as connection:
            found = (await connection.execute(select(version.c.version))).scalars().all()
            if not found:
                await connection.execute(insert(version).values(version=SCHEMA_VERSION))
            elif max(found) > SCHEMA_VERSION:
                raise BackendUnavailable(
                    f"The database schema is version {max(found)}, newer than this release "
                    f"understands ({SCHEMA_VERSION}); upgrade openai-files."
                )
            elif max(found) < SCHEMA_VERSION:
                await connection.run_sync(upgrade, self.tables, max(found))
            await connection.commit()

    async def drop_schema(self) -> None:
        """Drop this store's tables (for tests and uninstalls)."""
        async with self._translate(), self.engine.begin() as connection:
            await connection.run_sync(self.tables.metadata.drop_all, checkfirst=True)
        self._ready = False

    # -- uploads ----------------------------------------------------------------------------

    async def insert(self, record: FileRecord, *, quota: Quota | None = None) -> None:
        async with self._transaction() as connection:
            # In a transaction of its own: on MariaDB the shared lock an INSERT IGNORE takes on
            # an existing row, held into a later update, deadlocks concurrent uploads.
            await connection.execute(
                insert_ignoring_duplicates(
                    self._dialect,
                    self.tables.usage,
                    {"owner": record.owner, "files": 0, "bytes": 0},
                )
            )
        async with self._transaction() as connection:
            if not await self._add_usage(connection, record.owner, 1, record.bytes, quota):
                usage = await self._read_usage(connection, record.owner)
                raise QuotaExceeded.for_usage(
                    quota.max_files if quota else None,
                    quota.max_bytes if quota else None,
                    usage.files,
                )
            try:
                await connection.execute(insert(self._files).values(**_row(record)))
            except IntegrityError as exc:
                raise Conflict(f"A file with id {record.id} exists already.") from exc

    async def reserve(self, owner: str, file_id: str, size: int, *, quota: Quota | None) -> bool:
        files = self._files
        async with self._transaction() as connection:
            if not await self._add_usage(connection, owner, 0, size, quota):
                return False
            grown = await connection.execute(
                update(files)
                .where(files.c.id == file_id, files.c.owner == owner, files.c.state == "pending")
                .values(bytes=files.c.bytes + size)
            )
            if grown.rowcount != 1:
                raise _Rollback  # not pending any more: undo the usage too
            return True
        return False

    async def commit(
        self, record: FileRecord, *, idempotency_key: str | None = None, key_since: int = 0
    ) -> str:
        try:
            return await self._commit(record, idempotency_key, key_since)
        except IntegrityError:
            # A concurrent upload with the same key committed first: answer with its file.
            assert idempotency_key is not None
            earlier = await self.idempotent_file(record.owner, idempotency_key, since=key_since)
            if earlier is None:
                raise
            return earlier

    async def _commit(self, record: FileRecord, key: str | None, key_since: int) -> str:
        files, keys = self._files, self.tables.idempotency
        async with self._transaction(translate_integrity=False) as connection:
            now = record.changed_at
            if key is not None:
                earlier = await self._key_file(connection, record.owner, key, key_since, now=now)
                if earlier is not None:
                    return earlier
            mine = and_(files.c.id == record.id, files.c.owner == record.owner)
            reserved = (
                await connection.execute(
                    select(files.c.bytes).where(mine, files.c.state == "pending")
                )
            ).scalar()
            if reserved is None:
                raise Conflict("The upload was abandoned before it completed; upload it again.")
            done = await connection.execute(
                update(files)
                .where(mine, files.c.state == "pending", files.c.bytes == reserved)
                .values(**_row(record.replace(state="active")))
            )
            if done.rowcount != 1:
                raise Conflict("The upload changed while it was completing; upload it again.")
            await self._add_usage(connection, record.owner, 0, record.bytes - reserved, None)
            if key is not None:
                # Free the key only from a stale row (past the window, or whose file is no longer
                # visible: expired, deleted or gone): a fresh row another replica just wrote
                # makes the insert below fail, and the caller answers with that replica's file.
                live_file = select(files.c.id).where(
                    files.c.id == keys.c.file_id, self._visible(now)
                )
                await connection.execute(
                    delete(keys).where(
                        keys.c.owner == record.owner,
                        keys.c.key == key,
                        or_(keys.c.created_at < key_since, ~live_file.exists()),
                    )
                )
                await connection.execute(
                    insert(keys).values(
                        owner=record.owner,
                        key=key,
                        file_id=record.id,
                        created_at=record.changed_at,
                    )
                )
        return record.id

    async def idempotent_file(self, owner: str, key: str, *, since: int) -> str | None:
        async with self._transaction() as connection:
            return await self._key_file(connection, owner, key, since, now=None)

    async def _key_file(
        self, connection: AsyncConnection, owner: str, key: str, since: int, *, now: int | None
    ) -> str | None:
        """The file of the owner's key, if it is still there (and visible at ``now``, if
        given): after a failed, deleted or expired upload the key is free again."""
        keys = self.tables.idempotency
        files = self._files
        there = files.c.state == "active" if now is None else self._visible(now)
        query = (
            select(keys.c.file_id)
            .join(files, and_(files.c.id == keys.c.file_id, there))
            .where(keys.c.owner == owner, keys.c.key == key, keys.c.created_at >= since)
        )
        found: str | None = (await connection.execute(query)).scalar()
        return found

    # -- reads ------------------------------------------------------------------------------

    async def get(
        self, owner: str, file_id: str, *, now: int, include_deleted: bool = False
    ) -> FileRecord | None:
        files = self._files
        shown = self._visible(now)
        if include_deleted:
            shown = or_(shown, files.c.state == "deleted")
        query = select(files).where(files.c.id == file_id, files.c.owner == owner, shown)
        async with self._transaction() as connection:
            row = (await connection.execute(query)).first()
        return None if row is None else _record(row)

    async def set_status(
        self, owner: str, file_id: str, *, status: str, details: str | None, now: int
    ) -> FileRecord | None:
        files = self._files
        visible = and_(files.c.id == file_id, files.c.owner == owner, self._visible(now))
        change = update(files).where(visible).values(status=status, status_details=details)
        async with self._transaction() as connection:
            # Not rowcount: MySQL counts only rows whose values changed, not rows matched.
            await connection.execute(change)
            row = (await connection.execute(select(files).where(visible))).first()
        return None if row is None else _record(row)

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
        query = self._listing(select(self._files), owner, now, purpose)
        if after is not None:
            query = query.where(self._beyond(after, order))
        return await self._page(query, order, offset=0, limit=limit)

    async def count(self, owner: str, *, now: int, purpose: str | None = None) -> int:
        query = self._listing(select(func.count()), owner, now, purpose)
        async with self._transaction() as connection:
            return int((await connection.execute(query)).scalar_one())

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
        query = self._listing(select(self._files), owner, now, purpose)
        return await self._page(query, order, offset=offset, limit=limit)

    def _listing(
        self, query: Select[Any], owner: str, now: int, purpose: str | None
    ) -> Select[Any]:
        """``query`` narrowed to the owner's files visible at ``now`` (of ``purpose``)."""
        files = self._files
        query = query.where(files.c.owner == owner, self._visible(now))
        return query if purpose is None else query.where(files.c.purpose == purpose)

    async def _page(
        self, query: Select[Any], order: Order, *, offset: int, limit: int
    ) -> builtins.list[FileRecord]:
        """The records of ``query`` in ``order`` of creation, ``limit`` of them from ``offset``."""
        files = self._files
        if order == "asc":
            query = query.order_by(files.c.created_us.asc(), files.c.id.asc())
        else:
            query = query.order_by(files.c.created_us.desc(), files.c.id.desc())
        async with self._transaction() as connection:
            rows = (await connection.execute(query.offset(offset).limit(limit))).all()
        return [_record(row) for row in rows]

    async def usage(self, owner: str) -> Usage:
        async with self._transaction() as connection:
            return await self._read_usage(connection, owner)

    async def existing_keys(self, keys: builtins.list[str]) -> set[str]:
        files, parts = self._files, self.tables.parts
        found: set[str] = set()
        async with self._transaction() as connection:
            for start in range(0, len(keys), 500):
                batch = keys[start : start + 500]
                for column in (files.c.storage_key, parts.c.storage_key):
                    query = select(column).where(column.in_(batch))
                    found.update((await connection.execute(query)).scalars())
        return found

    # -- deletes and holds -------------------------------------------------------------------

    async def begin_delete(self, owner: str, file_id: str, *, now: int) -> FileRecord | None:
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
            record = _record(row)
            await self._add_usage(connection, owner, -1, -record.bytes, None)
        return record

    async def remove(self, owner: str, file_id: str, *, keep_record: bool = False) -> None:
        files, holds = self._files, self.tables.holds
        async with self._transaction() as connection:
            mine = and_(files.c.id == file_id, files.c.owner == owner)
            row = (await connection.execute(select(files).where(mine))).first()
            if row is None:
                return
            record = _record(row)
            seen = and_(mine, files.c.state == record.state, files.c.bytes == record.bytes)
            change = (
                update(files).where(seen).values(state="deleted", status="deleted")
                if keep_record
                else delete(files).where(seen)
            )
            if (await connection.execute(change)).rowcount != 1:
                raise _Rollback  # it changed under us; whoever changed it carries on
            if record.counts_against_quota:
                await self._add_usage(connection, owner, -1, -record.bytes, None)
            if not keep_record:
                await connection.execute(delete(holds).where(holds.c.file_id == file_id))

    async def hold(self, owner: str, file_id: str, holder: str, *, now: int) -> bool:
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
                raise _Rollback  # held by this holder already: undo the count
            await connection.execute(
                insert(holds).values(file_id=file_id, holder=holder, created_at=now)
            )
        return True

    async def release(self, owner: str, file_id: str, holder: str) -> bool:
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
        for candidate in (_record(row) for row in rows):
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

    # -- uploads ------------------------------------------------------------------------------

    async def create_upload(self, upload: UploadRecord, *, max_open: int | None = None) -> None:
        usage = self.tables.usage
        async with self._transaction() as connection:  # apart, as in `insert`
            await connection.execute(
                insert_ignoring_duplicates(
                    self._dialect, usage, {"owner": upload.owner, "files": 0, "bytes": 0}
                )
            )
        counted = update(usage).where(usage.c.owner == upload.owner)
        if max_open is not None:
            counted = counted.where(usage.c.open_uploads < max_open)
        fresh = upload.replace(received=0, part_count=0, reserved=0)
        async with self._transaction() as connection:
            opened = await connection.execute(counted.values(open_uploads=usage.c.open_uploads + 1))
            if opened.rowcount != 1:
                assert max_open is not None
                raise QuotaExceeded.for_open_uploads(max_open)
            try:
                await connection.execute(insert(self.tables.uploads).values(**vars(fresh)))
            except IntegrityError as exc:
                raise Conflict(f"An upload with id {upload.id} exists already.") from exc

    async def get_upload(self, owner: str, upload_id: str) -> UploadRecord | None:
        uploads = self.tables.uploads
        query = select(uploads).where(uploads.c.id == upload_id, uploads.c.owner == owner)
        async with self._transaction() as connection:
            row = (await connection.execute(query)).first()
        return None if row is None else UploadRecord(**row._mapping)

    async def move_upload(
        self,
        owner: str,
        upload_id: str,
        *,
        from_states: tuple[UploadState, ...],
        to: UploadState,
        file_id: str | None = None,
    ) -> bool:
        async with self._transaction() as connection:
            return await self._move_upload(connection, owner, upload_id, from_states, to, file_id)

    async def _move_upload(
        self,
        connection: AsyncConnection,
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
        if (await connection.execute(change.values(**values))).rowcount != 1:
            return False
        if closes:
            totals = select(uploads.c.reserved, uploads.c.received).where(mine)
            row = (await connection.execute(totals)).one()
            await connection.execute(update(uploads).where(mine).values(reserved=row.received))
            await self._add_usage(
                connection, owner, 0, row.received - row.reserved, None, open_uploads=-1
            )
        return True

    async def reserve_upload(
        self, owner: str, upload_id: str, size: int, *, quota: Quota | None
    ) -> bool:
        uploads = self.tables.uploads
        async with self._transaction() as connection:
            grown = await connection.execute(
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
            if not await self._add_usage(connection, owner, 0, size, quota):
                raise _Rollback  # over the quota: undo the upload's share too
            return True
        return False

    async def release_upload(self, owner: str, upload_id: str, size: int) -> None:
        async with self._transaction() as connection:
            await self._release_upload(connection, owner, upload_id, size)

    async def _release_upload(
        self, connection: AsyncConnection, owner: str, upload_id: str, size: int
    ) -> None:
        uploads = self.tables.uploads
        if size == 0:
            return
        shrunk = await connection.execute(
            update(uploads)
            .where(
                uploads.c.id == upload_id,
                uploads.c.owner == owner,
                uploads.c.state.in_(OPEN_UPLOAD_STATES),
            )
            .values(reserved=uploads.c.reserved - size)
        )
        if shrunk.rowcount == 1:
            await self._add_usage(connection, owner, 0, -size, None)

    async def add_part(
        self, part: PartRecord, *, reserved: int = 0, max_parts: int | None = None
    ) -> PartOutcome:
        uploads, parts = self.tables.uploads, self.tables.parts
        mine = and_(uploads.c.id == part.upload_id, uploads.c.owner == part.owner)
        fits = [uploads.c.state == "pending", uploads.c.received + part.bytes <= uploads.c.bytes]
        if max_parts is not None:
            fits.append(uploads.c.part_count < max_parts)
        async with self._transaction() as connection:
            # Counted first: the update locks the upload row, so a part cannot slip in while
            # the upload completes, and concurrent parts take their turns on the totals.
            counted = await connection.execute(
                update(uploads)
                .where(mine, *fits)
                .values(
                    received=uploads.c.received + part.bytes,
                    part_count=uploads.c.part_count + 1,
                    reserved=uploads.c.reserved - reserved + part.bytes,
                )
            )
            if counted.rowcount == 1:
                await connection.execute(insert(parts).values(**vars(part)))
                if part.bytes != reserved:
                    await self._add_usage(connection, part.owner, 0, part.bytes - reserved, None)
                return "added"
            await self._release_upload(connection, part.owner, part.upload_id, reserved)
            query = select(uploads.c.state, uploads.c.received, uploads.c.bytes).where(mine)
            row = (await connection.execute(query)).first()
        if row is None or row.state != "pending":
            return "not_pending"
        if row.received + part.bytes > row.bytes:
            return "over_declared_bytes"
        return "over_part_limit"

    async def get_parts(self, owner: str, upload_id: str) -> builtins.list[PartRecord]:
        parts = self.tables.parts
        query = select(parts).where(parts.c.upload_id == upload_id, parts.c.owner == owner)
        async with self._transaction() as connection:
            rows = (await connection.execute(query)).all()
        return [PartRecord(**row._mapping) for row in rows]

    async def expire_uploads(self, *, now: int) -> int:
        uploads, batch = self.tables.uploads, 100
        # A completion that died half-way expires too, so its parts are discarded.
        due = (
            select(uploads.c.owner, uploads.c.id)
            .where(uploads.c.state.in_(OPEN_UPLOAD_STATES), uploads.c.expires_at <= now)
            .limit(batch)
        )
        expired = 0
        while True:
            async with self._transaction() as connection:
                candidates = (await connection.execute(due)).all()
            for owner, upload_id in candidates:
                async with self._transaction() as connection:
                    expired += await self._move_upload(
                        connection, owner, upload_id, OPEN_UPLOAD_STATES, "expired", expired_at=now
                    )
            if len(candidates) < batch:
                return expired

    async def finished_parts(self, *, limit: int) -> builtins.list[PartRecord]:
        uploads, parts = self.tables.uploads, self.tables.parts
        done = select(uploads.c.id).where(
            uploads.c.state.in_(("completed", "cancelled", "expired"))
        )
        query = select(parts).where(parts.c.upload_id.in_(done)).limit(limit)
        async with self._transaction() as connection:
            rows = (await connection.execute(query)).all()
        return [PartRecord(**row._mapping) for row in rows]

    async def remove_part(self, part_id: str) -> None:
        uploads, parts = self.tables.uploads, self.tables.parts
        async with self._transaction() as connection:
            row = (await connection.execute(select(parts).where(parts.c.id == part_id))).first()
            if row is None:
                return
            part = PartRecord(**row._mapping)
            if (await connection.execute(delete(parts).where(parts.c.id == part_id))).rowcount != 1:
                raise _Rollback  # removed meanwhile, by whoever counts it out
            await connection.execute(
                update(uploads)
                .where(uploads.c.id == part.upload_id)
                .values(
                    received=uploads.c.received - part.bytes,
                    part_count=uploads.c.part_count - 1,
                    reserved=uploads.c.reserved - part.bytes,
                )
            )
            await self._add_usage(connection, part.owner, 0, -part.bytes, None)

    async def aclose(self) -> None:
        if self._owns_engine:
            await self.engine.dispose()

    # -- helpers ----------------------------------------------------------------------------

    async def _add_usage(
        self,
        connection: AsyncConnection,
        owner: str,
        files: int,
        size: int,
        quota: Quota | None,
        *,
        open_uploads: int = 0,
    ) -> bool:
        """Add to the owner's usage row (made by `insert` or `create_upload`); False,
        changing nothing, if that would pass ``quota``."""
        usage = self.tables.usage
        change = update(usage).where(usage.c.owner == owner)
        if quota is not None and quota.max_files is not None and files > 0:
            change = change.where(usage.c.files + files <= quota.max_files)
        if quota is not None and quota.max_bytes is not None and size > 0:
            change = change.where(usage.c.bytes + size <= quota.max_bytes)
        values = {"files": usage.c.files + files, "bytes": usage.c.bytes + size}
        if open_uploads:
            values["open_uploads"] = usage.c.open_uploads + open_uploads
        result = await connection.execute(change.values(**values))
        return bool(result.rowcount == 1)

    async def _read_usage(self, connection: AsyncConnection, owner: str) -> Usage:
        usage = self.tables.usage
        query = select(usage.c.files, usage.c.bytes, usage.c.open_uploads).where(
            usage.c.owner == owner
        )
        row = (await connection.execute(query)).first()
        if row is None:
            return Usage(files=0, bytes=0)
        return Usage(files=row.files, bytes=row.bytes, open_uploads=row.open_uploads)

    def _visible(self, now: int) -> ColumnElement[bool]:
        files = self._files
        return and_(
            files.c.state == "active",
            or_(files.c.expires_at.is_(None), files.c.expires_at > now, files.c.hold_count > 0),
        )

    def _beyond(self, after: Cursor, order: Order) -> ColumnElement[bool]:
        created_us, file_id = after
        column_time, column_id = self._files.c.created_us, self._files.c.id
        if order == "asc":
            return or_(
                column_time > created_us, and_(column_time == created_us, column_id > file_id)
            )
        return or_(column_time < created_us, and_(column_time == created_us, column_id < file_id))

    @asynccontextmanager
    async def _transaction(
        self, *, translate_integrity: bool = True
    ) -> AsyncIterator[AsyncConnection]:
        """One transaction; `_Rollback` raised inside undoes it without failing the call."""
        if not self._ready:
            await self.create_schema()
        async with self._translate(translate_integrity), self.engine.connect() as connection:
            transaction = await connection.begin()
            try:
                yield connection
            except _Rollback:
                await transaction.rollback()
            except BaseException:
                await transaction.rollback()
                raise
            else:
                await transaction.commit()

    @asynccontextmanager
    async def _translate(self, translate_integrity: bool = True) -> AsyncIterator[None]:
        try:
            yield
        except OpenAIFilesError:
            raise
        except IntegrityError:
            if not translate_integrity:
                raise
            raise BackendUnavailable("The metadata database refused a write; retry.") from None
        except (SQLAlchemyError, OSError, UnicodeError) as exc:
            if _refused_value(exc):
                raise InvalidRequest(
                    "A value in the request cannot be stored: it holds a character the "
                    "database refuses (such as NUL or an unpaired surrogate) or is longer than "
                    "its field allows. Correct the value; retrying it unchanged will fail again."
                ) from exc
            raise BackendUnavailable(
                f"The metadata database failed: {type(exc).__name__}. Retry the request."
            ) from exc


_MYSQL_REFUSED_VALUE = frozenset({1264, 1292, 1300, 1366, 1406})
"""MariaDB/MySQL errors about a value, not the server: out of range, incorrect value, invalid
character string, incorrect string value, data too long."""


def _refused_value(exc: BaseException) -> bool:
    """True if ``exc`` says the database (or its driver) cannot take a value of the request,
    which retrying cannot fix: a string the driver cannot encode, PostgreSQL's data exceptions
    (SQLSTATE class 22: a character not in the repertoire, string data right truncation,
    invalid byte sequence, ...), MariaDB's `_MYSQL_REFUSED_VALUE`. Anything else, such as a
    lost connection, stays an outage."""
    seen: set[int] = set()
    error: BaseException | None = exc
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        if isinstance(error, UnicodeError):
            return True
        sqlstate = getattr(error, "sqlstate", None)
        if isinstance(sqlstate, str) and sqlstate.startswith("22"):
            return True
        code = error.args[0] if error.args else None
        if (
            isinstance(code, int)
            and code in _MYSQL_REFUSED_VALUE
            and not isinstance(error, OSError)
        ):
            return True
        orig = error.orig if isinstance(error, StatementError) else None
        error = orig if orig is not None else (error.__cause__ or error.__context__)
    return False


class _Rollback(Exception):
    """Raised inside `SQLMetadataStore._transaction` to undo the transaction quietly; the
    code after the ``async with`` block then runs."""


def _make_engine(url: str, options: Mapping[str, Any] | None) -> AsyncEngine:
    parsed = make_url(url)
    settings: dict[str, Any] = {"pool_pre_ping": True}
    if parsed.get_backend_name() == "sqlite":
        settings = {"connect_args": {"timeout": 30}}
    elif parsed.get_backend_name() in {"mysql", "mariadb"} and "charset" not in parsed.query:
        parsed = parsed.update_query_dict({"charset": "utf8mb4"})
    settings.update(options or {})
    engine = create_async_engine(parsed, **settings)
    if parsed.get_backend_name() == "sqlite":
        event.listen(engine.sync_engine, "connect", _configure_sqlite)
    return engine


def _configure_sqlite(connection: Any, _record: Any) -> None:
    cursor = connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


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


def _row(record: FileRecord) -> dict[str, Any]:
    return {name: getattr(record, name) for name in _COLUMNS}


def _record(row: Row[Any]) -> FileRecord:
    mapping = row._mapping
    return FileRecord(**{name: mapping[name] for name in _COLUMNS})
