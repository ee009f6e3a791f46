"""The SQL store's hottest statements, built once per store with bound parameters: running
one then costs a lookup in SQLAlchemy's compiled cache, not a new statement to build and key
(which costs more than SQLite takes to run it).

- `Statements.get`: one file by ``file_id`` and ``owner``, visible at ``now``;
- `Statements.page`: a keyset page of an owner's visible files, ``limit`` of them past
  ``(after_us, after_id)`` (when paging on) and of ``purpose`` (when filtered), read from the
  owner's index as a range that starts at the cursor on every database (`_beyond`,
  `Statements.on_owner_index`); `Statements.page_at`: ``limit`` of them from ``offset``;
- `Statements.key_file`: the file an owner's idempotency ``key`` made since ``since``, if it is
  still active (and visible at ``now``, when asked at a time);
- `Statements.usage`, `Statements.usage_row` and `Statements.add_usage`: an owner's usage row
  read, made sure of, and grown by ``d_files``, ``d_bytes`` (and ``d_open``) under
  ``max_files``/``max_bytes``;
- `Statements.count_active` and `Statements.active_total`: an owner's count of active files of
  a purpose moved by ``d_files``, and the count of their files visible at ``now`` (of
  ``purpose``) read from those counts;
- `Statements.upload` and `Statements.upload_parts`: an owner's upload by ``upload_id``, and
  its parts;
- `Statements.insert_file`, `Statements.reserved`, `Statements.activate`: a file row written,
  and, at the commit of an upload, the bytes it reserved read and the row made active;
- `Statements.mark_deleting`, `Statements.owned`, `Statements.visible_id`, `Statements.drop`,
  `Statements.finish_deleting`: the delete of a file; `Statements.claim`,
  `Statements.lock_for_claim` and `Statements.claim_ids`: a sweeper's claim of a batch.

On PostgreSQL, a create and a delete are one statement each: `OneStatementWrites`
(``_sql_one_statement``) builds them from these.

Parameters named like a column are the values the statement writes to that column; the others
(``b_id``, ``b_owner``, ...) are what it matches.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from sqlalchemy import (
    BigInteger,
    Delete,
    Insert,
    Integer,
    Select,
    Table,
    Update,
    and_,
    bindparam,
    delete,
    func,
    insert,
    or_,
    select,
    tuple_,
    update,
)
from sqlalchemy.sql.elements import BindParameter, ColumnElement

from .base import Order
from .sql_schema import Tables, insert_adding, insert_ignoring_duplicates

__all__ = ["Statements", "visible"]


def visible(files: Table, now: int | BindParameter[int]) -> ColumnElement[bool]:
    """Rows of ``files`` a client sees at ``now``: active, and unexpired or held."""
    return and_(
        files.c.state == "active",
        or_(files.c.expires_at.is_(None), files.c.expires_at > now, files.c.hold_count > 0),
    )


class Statements:
    """The statements of one store's tables."""

    def __init__(self, tables: Tables, dialect: str) -> None:
        self._files = tables.files
        self._keys = tables.idempotency
        self._uploads = tables.uploads
        self._parts = tables.parts
        self._usage = tables.usage
        self._counts = tables.counts
        self._bytes = tables.file_bytes
        self._dialect = dialect
        self._prefix = tables.files.name.removesuffix("files")

    @cache  # noqa: B019 (one instance per store, living as long as it)
    def get(self, include_deleted: bool) -> Select[Any]:
        files = self._files
        shown = visible(files, bindparam("now", type_=BigInteger))
        if include_deleted:
            shown = or_(shown, files.c.state == "deleted")
        return select(files).where(
            files.c.id == bindparam("file_id"), files.c.owner == bindparam("owner"), shown
        )

    @cache  # noqa: B019
    def page(self, order: Order, by_purpose: bool, after: bool) -> Select[Any]:
        query = self._owners_files(order, by_purpose)
        if after:
            query = query.where(_beyond(self._files, order))
        return query.limit(bindparam("limit", type_=Integer))

    @cache  # noqa: B019
    def page_at(self, order: Order, by_purpose: bool) -> Select[Any]:
        """On MariaDB a deferred join: the ids of the page are read from the owner's index
        alone (it holds the columns that decide visibility), then only their rows, where a
        plain ``OFFSET`` reads the row of every file it steps over. At an offset of 1,000 with
        1,000,000 files: 2.2 ms instead of 3.0 ms. SQLite and PostgreSQL measured slower with
        it (PostgreSQL's 0.8 ms became 1.1 ms), so they keep the plain ``OFFSET``."""
        query = self._owners_files(order, by_purpose).limit(bindparam("limit", type_=Integer))
        query = query.offset(bindparam("offset", type_=Integer))
        if self._dialect not in ("mysql", "mariadb"):
            return query
        files = self._files
        page = query.with_only_columns(files.c.id).subquery("page")
        return self._in_order(select(files).join(page, files.c.id == page.c.id), order)

    def _owners_files(self, order: Order, by_purpose: bool) -> Select[Any]:
        """The owner's files visible at ``now`` (of ``purpose``) in ``order`` of creation."""
        files = self._files
        query = select(files).where(
            files.c.owner == bindparam("owner"), visible(files, bindparam("now", type_=BigInteger))
        )
        if by_purpose:
            query = query.where(files.c.purpose == bindparam("purpose"))
        return self._in_order(self.on_owner_index(query, by_purpose), order)

    def _in_order(self, query: Select[Any], order: Order) -> Select[Any]:
        """``query`` of files in ``order`` of creation, ties broken by id."""
        files = self._files
        if order == "asc":
            return query.order_by(files.c.created_us.asc(), files.c.id.asc())
        return query.order_by(files.c.created_us.desc(), files.c.id.desc())

    def on_owner_index(self, query: Select[Any], by_purpose: bool) -> Select[Any]:
        """``query`` of an owner's files (of one purpose, ``by_purpose``), made to read the
        ``(owner, [purpose,] created_us, id)`` index as a range on every database.

        MariaDB's optimizer reads the owner's whole ``(owner, created_us, id)`` range (``ref``
        access) rather than the range from a cursor, and takes that index for a purpose page
        too: there the index is named.
        """
        if self._dialect not in ("mysql", "mariadb"):
            return query
        index = "files_by_owner_purpose" if by_purpose else "files_by_owner"
        return query.with_hint(self._files, f"FORCE INDEX ({self._prefix}{index})")

    @cache  # noqa: B019
    def key_file(self, at_now: bool) -> Select[Any]:
        keys, files = self._keys, self._files
        there = (
            visible(files, bindparam("now", type_=BigInteger))
            if at_now
            else files.c.state == "active"
        )
        return (
            select(keys.c.file_id)
            .join(files, and_(files.c.id == keys.c.file_id, there))
            .where(
                keys.c.owner == bindparam("owner"),
                keys.c.key == bindparam("key"),
                keys.c.created_at >= bindparam("since", type_=BigInteger),
            )
        )

    @cache  # noqa: B019
    def upload(self) -> Select[Any]:
        uploads = self._uploads
        return select(uploads).where(
            uploads.c.id == bindparam("upload_id"), uploads.c.owner == bindparam("owner")
        )

    @cache  # noqa: B019
    def upload_parts(self) -> Select[Any]:
        parts = self._parts
        return select(parts).where(
            parts.c.upload_id == bindparam("upload_id"), parts.c.owner == bindparam("owner")
        )

    @cache  # noqa: B019
    def usage(self) -> Select[Any]:
        usage = self._usage
        return select(usage.c.files, usage.c.bytes, usage.c.open_uploads).where(
            usage.c.owner == bindparam("owner")
        )

    @cache  # noqa: B019
    def usage_row(self) -> Insert:
        values = {"owner": bindparam("owner"), "files": 0, "bytes": 0}
        return insert_ignoring_duplicates(self._dialect, self._usage, values)

    @cache  # noqa: B019
    def add_usage(self, max_files: bool, max_bytes: bool, open_uploads: bool) -> Update:
        usage = self._usage
        change = update(usage).where(usage.c.owner == bindparam("b_owner"))
        if max_files:
            files_cap = bindparam("max_files", type_=BigInteger)
            change = change.where(
                usage.c.files + bindparam("d_files", type_=BigInteger) <= files_cap
            )
        if max_bytes:
            bytes_cap = bindparam("max_bytes", type_=BigInteger)
            change = change.where(
                usage.c.bytes + bindparam("d_bytes", type_=BigInteger) <= bytes_cap
            )
        values = {
            "files": usage.c.files + bindparam("d_files", type_=BigInteger),
            "bytes": usage.c.bytes + bindparam("d_bytes", type_=BigInteger),
        }
        if open_uploads:
            values["open_uploads"] = usage.c.open_uploads + bindparam("d_open", type_=BigInteger)
        return change.values(values)

    @cache  # noqa: B019
    def count_active(self) -> Insert:
        values = {
            "owner": bindparam("owner"),
            "purpose": bindparam("purpose"),
            "files": bindparam("d_files", type_=BigInteger),
        }
        return insert_adding(self._dialect, self._counts, values, "files")

    @cache  # noqa: B019
    def active_total(self, by_purpose: bool) -> Select[Any]:
        """The owner's active files (of ``purpose``) from their counts, less those of them
        expired at ``now`` and unheld, which the sweeper has not claimed yet: those are found
        through the ``(state, expires_at)`` index, so the total costs what the sweeper's backlog
        holds, not what the owner has."""
        counts, files = self._counts, self._files
        now = bindparam("now", type_=BigInteger)
        counted = select(func.coalesce(func.sum(counts.c.files), 0)).where(
            counts.c.owner == bindparam("owner")
        )
        hidden = select(func.count()).where(
            files.c.state == "active",
            files.c.expires_at.is_not(None),
            files.c.expires_at <= now,
            files.c.hold_count == 0,
            files.c.owner == bindparam("owner"),
        )
        if by_purpose:
            counted = counted.where(counts.c.purpose == bindparam("purpose"))
            hidden = hidden.where(files.c.purpose == bindparam("purpose"))
        if self._dialect in ("mysql", "mariadb"):
            hidden = hidden.with_hint(files, f"FORCE INDEX ({self._prefix}files_by_state_expiry)")
        return select(counted.scalar_subquery() - hidden.scalar_subquery())

    @cache  # noqa: B019
    def insert_file(self) -> Insert:
        return insert(self._files)

    @cache  # noqa: B019
    def insert_bytes(self) -> Insert:
        """A small file's bytes, ``data``, kept under its ``storage_key`` (`InlineFiles`)."""
        return insert(self._bytes)

    @cache  # noqa: B019
    def inline_bytes(self) -> Select[Any]:
        kept = self._bytes
        return select(kept.c.data).where(kept.c.storage_key == bindparam("b_key"))

    @cache  # noqa: B019
    def get_with_bytes(self) -> Select[Any]:
        """`get` of a visible file, with the bytes kept under its storage key (or NULL)."""
        files, kept = self._files, self._bytes
        joined = files.outerjoin(kept, kept.c.storage_key == files.c.storage_key)
        return self.get(False).add_columns(kept.c.data).select_from(joined)

    @cache  # noqa: B019
    def delete_bytes(self) -> Delete:
        kept = self._bytes
        return delete(kept).where(kept.c.storage_key == bindparam("b_key"))

    @cache  # noqa: B019
    def reserved(self) -> Select[Any]:
        files = self._files
        return select(files.c.bytes).where(_mine(files), files.c.state == "pending")

    @cache  # noqa: B019
    def activate(self) -> Update:
        """Set from the parameters named like columns, only while pending with ``reserved``."""
        files = self._files
        return update(files).where(
            _mine(files),
            files.c.state == "pending",
            files.c.bytes == bindparam("reserved", type_=BigInteger),
        )

    @cache  # noqa: B019
    def mark_deleting(self, returning: bool) -> Update:
        """Mark the visible, unheld row ``deleting``; with ``returning``, return it so."""
        files = self._files
        now = bindparam("now", type_=BigInteger)
        mark = (
            update(files)
            .where(_mine(files), visible(files, now), files.c.hold_count == 0)
            .values(state="deleting", changed_at=now)
        )
        return mark.returning(*files.c) if returning else mark

    @cache  # noqa: B019
    def claim(self) -> Update:
        """Claim for a sweeper, in one statement, the rows of ``b_ids`` that have no hold and
        still have the state and ``changed_at`` they were read with (``b_seen``: ``(id, state,
        changed_at)`` triples), returning the ids claimed; for SQLite. (On PostgreSQL it took
        longer for a batch of 100 than `Statements.lock_for_claim` and `Statements.claim_ids`
        together, on MariaDB ten times longer, and MariaDB's UPDATE cannot return its rows.)"""
        files = self._files
        seen = tuple_(files.c.id, files.c.state, files.c.changed_at)
        return (
            self.claim_ids()
            .where(seen.in_(bindparam("b_seen", expanding=True)), files.c.hold_count == 0)
            .returning(files.c.id)
        )

    @cache  # noqa: B019
    def claim_ids(self) -> Update:
        """Claim the rows of ``b_ids`` for a sweeper, whatever they hold: for rows locked and
        checked first (`Statements.lock_for_claim`)."""
        files = self._files
        return (
            update(files)
            .where(files.c.id.in_(bindparam("b_ids", expanding=True)))
            .values(state="deleting", changed_at=bindparam("now", type_=BigInteger))
        )

    @cache  # noqa: B019
    def lock_for_claim(self) -> Select[Any]:
        """The rows of ``b_ids`` as they are now, locked (``FOR UPDATE``) in the order of their
        ids, for the sweeper to check before `Statements.claim_ids` on PostgreSQL and MariaDB."""
        files = self._files
        columns = (files.c.id, files.c.state, files.c.changed_at, files.c.hold_count)
        return (
            select(*columns)
            .where(files.c.id.in_(bindparam("b_ids", expanding=True)))
            .order_by(files.c.id)
            .with_for_update()
        )

    @cache  # noqa: B019
    def owned(self) -> Select[Any]:
        return select(self._files).where(_mine(self._files))

    @cache  # noqa: B019
    def visible_id(self) -> Select[Any]:
        files = self._files
        return select(files.c.id).where(
            _mine(files), visible(files, bindparam("now", type_=BigInteger))
        )

    @cache  # noqa: B019
    def finish_deleting(self, keep_record: bool) -> Delete | Update:
        """Delete the row (or, ``keep_record``, mark it ``deleted``) only while ``deleting``."""
        files = self._files
        deleting = and_(_mine(files), files.c.state == "deleting")
        if keep_record:
            return update(files).where(deleting).values(state="deleted", status="deleted")
        return delete(files).where(deleting)

    @cache  # noqa: B019
    def drop(self) -> Delete:
        """Delete the row only while it has the ``b_state`` and ``b_bytes`` it was read with."""
        files = self._files
        return delete(files).where(
            _mine(files),
            files.c.state == bindparam("b_state"),
            files.c.bytes == bindparam("b_bytes", type_=BigInteger),
        )


def _beyond(files: Table, order: Order) -> ColumnElement[bool]:
    """Rows past the cursor ``(after_us, after_id)`` in ``order``."""
    created_us, file_id = (
        bindparam("after_us", type_=BigInteger),
        bindparam("after_id", type_=files.c.id.type),
    )
    column_time, column_id = files.c.created_us, files.c.id
    # Written so that every planner bounds the index range by the cursor's time (``created_us
    # <= X`` is a range condition of the ``(owner, [purpose,] created_us, id)`` indexes) and
    # filters only the rows of the cursor's own microsecond by id. ``A < X OR (A = X AND
    # B < Y)`` is not a range to any of them (each scanned the index from the start of the
    # owner's files), and row values ``(A, B) < (X, Y)`` are a range to PostgreSQL only.
    if order == "asc":
        return and_(column_time >= created_us, or_(column_time > created_us, column_id > file_id))
    return and_(column_time <= created_us, or_(column_time < created_us, column_id < file_id))


def _mine(files: Table) -> ColumnElement[bool]:
    return and_(files.c.id == bindparam("b_id"), files.c.owner == bindparam("b_owner"))
