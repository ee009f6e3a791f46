"""PostgreSQL's one-statement writes: a create and the two steps of a delete, each with the
owner's usage and count of active files, in one statement that the server commits on its own.

One statement is one transaction: a round trip, where the same writes in a transaction take
five (``BEGIN``, three statements, ``COMMIT``). Its data-modifying parts (common table
expressions) run on one snapshot, each after the one whose ``RETURNING`` it reads. When one
changes nothing (the owner's first file, a quota that refuses, a held file), the store does the
same in a transaction, which says why.

Parameters are named as in `Statements`.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from sqlalchemy import BigInteger, Select, bindparam, func, insert, literal, select, update
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import Dialect
from sqlalchemy.types import LargeBinary, TypeDecorator

from ._sql_statements import Statements
from .sql_schema import Tables

__all__ = ["OneStatementWrites"]


class _Bytes(TypeDecorator[bytes]):
    """PostgreSQL's ``bytea`` for a parameter that is `bytes` already: asyncpg's dialect wraps
    each value in ``Binary`` (a no-op there), which would keep the statement off the driver."""

    impl = LargeBinary
    cache_ok = True

    def bind_processor(self, dialect: Dialect) -> None:
        return None


class OneStatementWrites:
    """The one-statement writes of one store's tables, built once each (PostgreSQL only)."""

    def __init__(self, tables: Tables, statements: Statements) -> None:
        self._files = tables.files
        self._usage = tables.usage
        self._counts = tables.counts
        self._bytes = tables.file_bytes
        self._statements = statements

    @cache  # noqa: B019
    def insert_counted(
        self, max_files: bool, max_bytes: bool, active: bool, inline: bool = False
    ) -> Select[Any]:
        """a file row written (from the parameters named like columns) in one
        statement with the owner's usage row grown by one file and ``bytes`` under
        ``max_files``/``max_bytes``, ``active``, the owner's count of active files of its
        purpose grown by one, and ``inline``, the file's bytes (``data``) kept under its
        ``storage_key``; nothing is written unless the usage row was. Its row: how many usage
        rows were grown (0 or 1) and files written.

        Its parts run in this order: the usage row's update (locking it, its quota checked on
        its latest version), then the file row, then the count."""
        usage, files, counts = self._usage, self._files, self._counts
        size = bindparam("bytes", type_=BigInteger)
        grow = update(usage).where(usage.c.owner == bindparam("owner"))
        if max_files:
            grow = grow.where(usage.c.files + 1 <= bindparam("max_files", type_=BigInteger))
        if max_bytes:
            grow = grow.where(usage.c.bytes + size <= bindparam("max_bytes", type_=BigInteger))
        grown = (
            grow.values(files=usage.c.files + 1, bytes=usage.c.bytes + size)
            .returning(usage.c.owner)
            .cte("grown")
        )
        values = [bindparam(column.name, type_=column.type) for column in files.c]
        row = select(*values).where(select(grown.c.owner).exists())
        written = insert(files).from_select(list(files.c), row).returning(files.c.id).cte("written")
        parts = [grown, written]
        if active:
            counted = postgresql.insert(counts).from_select(
                [counts.c.owner, counts.c.purpose, counts.c.files],
                select(
                    bindparam("owner", type_=counts.c.owner.type),
                    bindparam("purpose", type_=counts.c.purpose.type),
                    literal(1, BigInteger),
                ).where(select(written.c.id).exists()),
            )
            parts.append(
                counted.on_conflict_do_update(
                    index_elements=[part.name for part in counts.primary_key],
                    set_={"files": counts.c.files + counted.excluded.files},
                )
                .returning(counts.c.owner)
                .cte("counted")
            )
        if inline:
            kept = self._bytes
            data = select(
                bindparam("storage_key", type_=kept.c.storage_key.type),
                bindparam("data", type_=_Bytes()),
            ).where(select(literal(1)).select_from(parts[-1]).exists())
            kept_row = insert(kept).from_select(["storage_key", "data"], data)
            parts.append(kept_row.returning(kept.c.storage_key).cte("kept"))
        grown_rows = select(func.count()).select_from(grown).scalar_subquery()
        written_rows = select(func.count()).select_from(parts[-1]).scalar_subquery()
        return select(grown_rows, written_rows)

    @cache  # noqa: B019
    def mark_deleting_counted(self) -> Select[Any]:
        """`Statements.mark_deleting` in one statement with the owner's usage row shrunk
        by the file (one file, its ``bytes``) and the owner's count of active files of its
        purpose by one. Its rows: the row marked, every column of the files table in order,
        then how many usage rows and counts were changed; none if nothing was marked (the
        caller then does it in a transaction, which says why).

        Its parts take the locks in a transaction's order: the file row's (so deleters and
        holders serialise on it), then the usage row's, then the count's."""
        usage, counts = self._usage, self._counts
        marked = self._statements.mark_deleting(True).cte("marked")
        shrunk = (
            update(usage)
            .where(usage.c.owner == marked.c.owner)
            .values(files=usage.c.files - 1, bytes=usage.c.bytes - marked.c.bytes)
            .returning(usage.c.owner)
            .cte("shrunk")
        )
        less = postgresql.insert(counts).from_select(
            [counts.c.owner, counts.c.purpose, counts.c.files],
            select(marked.c.owner, marked.c.purpose, literal(-1, BigInteger)),
        )
        uncounted = (
            less.on_conflict_do_update(
                index_elements=[part.name for part in counts.primary_key],
                set_={"files": counts.c.files + less.excluded.files},
            )
            .returning(counts.c.owner)
            .cte("uncounted")
        )
        changed = [
            select(func.count()).select_from(part).scalar_subquery() for part in (shrunk, uncounted)
        ]
        return select(*marked.c, *changed)

    @cache  # noqa: B019
    def finish_deleting_counted(self, keep_record: bool) -> Select[Any]:
        """`Statements.finish_deleting` as a query whose one row is how many rows it
        changed (0 or 1), to run on the driver directly, committed on its own."""
        files = self._files
        finished = (
            self._statements.finish_deleting(keep_record).returning(files.c.id).cte("finished")
        )
        return select(func.count()).select_from(finished)
