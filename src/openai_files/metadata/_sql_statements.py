"""The SQL store's hottest statements, built once per store with bound parameters: a read
then costs a lookup in SQLAlchemy's compiled cache, not a new statement to build and key.

- `Statements.get`: one file by ``file_id`` and ``owner``, visible at ``now``;
- `Statements.page`: a keyset page of an owner's visible files, ``limit`` of them past
  ``(after_us, after_id)`` (when paging on) and of ``purpose`` (when filtered).
"""

from __future__ import annotations

from functools import cache
from typing import Any

from sqlalchemy import BigInteger, Integer, Select, Table, and_, bindparam, or_, select
from sqlalchemy.sql.elements import BindParameter, ColumnElement

from .base import Order

__all__ = ["Statements", "visible"]


def visible(files: Table, now: int | BindParameter[int]) -> ColumnElement[bool]:
    """Rows of ``files`` a client sees at ``now``: active, and unexpired or held."""
    return and_(
        files.c.state == "active",
        or_(files.c.expires_at.is_(None), files.c.expires_at > now, files.c.hold_count > 0),
    )


class Statements:
    """The statements of one files table."""

    def __init__(self, files: Table) -> None:
        self._files = files

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
        files = self._files
        query = select(files).where(
            files.c.owner == bindparam("owner"), visible(files, bindparam("now", type_=BigInteger))
        )
        if by_purpose:
            query = query.where(files.c.purpose == bindparam("purpose"))
        if after:
            query = query.where(_beyond(files, order))
        if order == "asc":
            query = query.order_by(files.c.created_us.asc(), files.c.id.asc())
        else:
            query = query.order_by(files.c.created_us.desc(), files.c.id.desc())
        return query.limit(bindparam("limit", type_=Integer))


def _beyond(files: Table, order: Order) -> ColumnElement[bool]:
    """Rows past the cursor ``(after_us, after_id)`` in ``order``."""
    created_us, file_id = (
        bindparam("after_us", type_=BigInteger),
        bindparam("after_id", type_=files.c.id.type),
    )
    column_time, column_id = files.c.created_us, files.c.id
    if order == "asc":
        return or_(column_time > created_us, and_(column_time == created_us, column_id > file_id))
    return or_(column_time < created_us, and_(column_time == created_us, column_id < file_id))
