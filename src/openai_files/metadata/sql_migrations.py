"""Upgrades of the SQL store's tables from an older schema version, run when the store starts.

`MIGRATIONS` lists the steps in order: the step with ``version`` n takes tables at version
n - 1 to version n. `upgrade` runs, in order, every step past the version the database
records, recording each version as its step ends; tables created fresh are made at
`SCHEMA_VERSION` by `Tables` and need no step.

To change the tables: change `Tables`, raise `SCHEMA_VERSION` by one, and append a step with
that version that brings existing tables to the new definition. A step:

- is a plain function of a synchronous `Connection` and the store's `Tables` (run through
  ``AsyncConnection.run_sync``), so it can use ``sqlalchemy.inspect`` and the dialect;
- is idempotent: replicas starting together may run it at the same time, and on MySQL and
  MariaDB, where DDL commits as it goes, a step cut short is run again at the next start. Look
  before changing (``inspect(connection).get_columns(...)``), or use statements that are no-ops
  when repeated;
- does nothing on a database that needs no change (say why in a comment).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from sqlalchemy import (
    Connection,
    Table,
    and_,
    delete,
    func,
    insert,
    inspect,
    literal,
    select,
    text,
    update,
)
from sqlalchemy.schema import CreateColumn

from .base import OPEN_UPLOAD_STATES
from .sql_schema import SCHEMA_VERSION, ExactString, Tables

__all__ = ["MIGRATIONS", "Migration", "upgrade"]


@dataclass(frozen=True)
class Migration:
    """One step: ``run`` takes the tables from ``version - 1`` to ``version``."""

    version: int
    summary: str
    run: Callable[[Connection, Tables], None]


def _exact_identifiers(connection: Connection, tables: Tables) -> None:
    """Compare owners, ids and keys byte for byte on MySQL and MariaDB (`ExactString`).

    SQLite (``BINARY``) and PostgreSQL (deterministic collations) did already: nothing to do.
    MySQL and MariaDB compared them with collations that ignore trailing spaces, and keys and
    holders also case and accents, so one owner's usage row may count another's files: it is
    counted again once the columns tell them apart.
    """
    if connection.dialect.name not in ("mysql", "mariadb"):
        return
    for table in tables.metadata.sorted_tables:
        _redefine_exact_columns(connection, table)
    _recount_usage(connection, tables)


def _upload_accounting(connection: Connection, tables: Tables) -> None:
    """Upgrade tables made before uploads were counted in the usage: add the usage's
    ``open_uploads`` and the uploads' ``received``, ``part_count`` and ``reserved`` columns
    where they are missing, then count what is stored: each upload's totals from its parts,
    and each owner's usage from their pending and active files, their uploads' parts (which
    count until they are discarded) and their open uploads.

    Idempotent (it adds only missing columns and recounts rather than adds), so it may run
    again after being cut short, or on several replicas at once. A plain function of a
    synchronous `Connection`; it redoes in full the usage count of step 2.
    """
    usage, uploads, parts, files = tables.usage, tables.uploads, tables.parts, tables.files
    _add_missing_columns(connection, usage, {"open_uploads": "0 NOT NULL"})
    zero = "0 NOT NULL"
    _add_missing_columns(
        connection, uploads, {"received": zero, "part_count": zero, "reserved": zero}
    )
    of_upload = parts.c.upload_id == uploads.c.id
    received = select(func.coalesce(func.sum(parts.c.bytes), 0)).where(of_upload)
    connection.execute(
        update(uploads).values(
            received=received.scalar_subquery(),
            part_count=select(func.count()).where(of_upload).scalar_subquery(),
            reserved=received.scalar_subquery(),
        )
    )
    missing = (
        select(uploads.c.owner, literal(0), literal(0), literal(0))
        .where(uploads.c.owner.not_in(select(usage.c.owner)))
        .distinct()
    )
    connection.execute(
        insert(usage).from_select(["owner", "files", "bytes", "open_uploads"], missing)
    )
    counted = and_(files.c.owner == usage.c.owner, files.c.state.in_(("pending", "active")))
    of_owner = uploads.c.owner == usage.c.owner
    file_bytes = select(func.coalesce(func.sum(files.c.bytes), 0)).where(counted)
    reserved = select(func.coalesce(func.sum(uploads.c.reserved), 0)).where(of_owner)
    open_uploads = select(func.count()).where(
        and_(of_owner, uploads.c.state.in_(OPEN_UPLOAD_STATES))
    )
    connection.execute(
        update(usage).values(
            files=select(func.count()).where(counted).scalar_subquery(),
            bytes=file_bytes.scalar_subquery() + reserved.scalar_subquery(),
            open_uploads=open_uploads.scalar_subquery(),
        )
    )


def _active_counts(connection: Connection, tables: Tables) -> None:
    """Count each owner's active files by purpose into ``file_counts`` (which `Tables` has
    just created, empty): recounted from the files, so it may run again."""
    files, counts = tables.files, tables.counts
    counted = (
        select(files.c.owner, files.c.purpose, func.count())
        .where(files.c.state == "active")
        .group_by(files.c.owner, files.c.purpose)
    )
    connection.execute(delete(counts))
    connection.execute(insert(counts).from_select(["owner", "purpose", "files"], counted))


def _upload_multiparts(connection: Connection, tables: Tables) -> None:
    """Add the uploads' ``multipart`` (NULL) and ``part_numbers`` (0) columns where they are
    missing: uploads made before them have no multipart upload in the storage. Idempotent."""
    _add_missing_columns(
        connection, tables.uploads, {"multipart": "NULL", "part_numbers": "0 NOT NULL"}
    )


def _add_missing_columns(connection: Connection, table: Table, defaults: dict[str, str]) -> None:
    """``ALTER TABLE ... ADD COLUMN`` each column of ``table`` named in ``defaults`` that the
    database lacks, as `Tables` defines it, with ``DEFAULT <its default>``."""
    preparer = connection.dialect.identifier_preparer
    present = {column["name"] for column in inspect(connection).get_columns(table.name)}
    for name, default in defaults.items():
        if name in present:
            continue
        column = table.c[name]
        kind = column.type.compile(dialect=connection.dialect)
        connection.exec_driver_sql(
            f"ALTER TABLE {preparer.format_table(table)} ADD COLUMN "
            f"{preparer.format_column(column)} {kind} DEFAULT {default}"
        )


def _visibility_in_owner_indexes(connection: Connection, tables: Tables) -> None:
    """Rebuild the owner's indexes that lack the columns of visibility (``state``,
    ``expires_at``, ``hold_count``), so that an offset page judges the rows it skips from the
    index instead of reading each one.

    Idempotent: an index already of its new columns is left alone, and one that a step cut
    short has dropped (MySQL and MariaDB commit DDL as it goes) is created.
    """
    files = tables.files
    found = {
        index["name"]: list(index["column_names"])
        for index in inspect(connection).get_indexes(files.name)
    }
    for index in files.indexes:
        if not (index.name or "").endswith(_OWNER_INDEXES):
            continue
        wanted = [column.name for column in index.columns]
        if found.get(index.name) == wanted:
            continue
        if index.name in found:
            index.drop(connection)
        index.create(connection)


_OWNER_INDEXES = ("files_by_owner", "files_by_owner_purpose")


def _inline_files(connection: Connection, tables: Tables) -> None:
    """Nothing to change: the new ``file_bytes`` table, empty until small files are kept in
    it, is made by `Tables` as the store starts, and no existing row changes."""


MIGRATIONS: tuple[Migration, ...] = (
    Migration(2, "identifiers compared byte for byte on MySQL and MariaDB", _exact_identifiers),
    Migration(3, "Uploads-API parts and open uploads counted in the usage", _upload_accounting),
    Migration(4, "active files counted per owner and purpose, for offset totals", _active_counts),
    Migration(5, "uploads remember their storage's multipart upload", _upload_multiparts),
    Migration(
        6, "the owner's indexes hold the columns of visibility", _visibility_in_owner_indexes
    ),
    Migration(7, "small files' bytes kept with their records (file_bytes)", _inline_files),
)
assert [step.version for step in MIGRATIONS] == list(range(2, SCHEMA_VERSION + 1))


def upgrade(connection: Connection, tables: Tables, found: int) -> None:
    """Run every step past version ``found``, in order, committing each with the version it
    reaches (``connection`` begins its transactions itself).

    Replicas that start together take turns: each step runs under a lock (a write to the
    version row, held until the step commits; on MySQL and MariaDB, whose DDL commits as it
    goes, a named lock of the session) and is skipped when another replica has run it
    meanwhile.
    """
    version = tables.version
    with _upgrade_lock(connection, tables):
        for step in MIGRATIONS:
            if step.version <= found:
                continue
            # Takes the row's lock (SQLite: the database's write lock) before looking again.
            connection.execute(update(version).values(version=version.c.version))
            now = connection.execute(select(func.max(version.c.version))).scalar_one()
            if now < step.version:
                step.run(connection, tables)
                connection.execute(
                    update(version)
                    .where(version.c.version < step.version)
                    .values(version=step.version)
                )
            connection.commit()


@contextmanager
def _upgrade_lock(connection: Connection, tables: Tables) -> Iterator[None]:
    """On MySQL and MariaDB, a lock named for the tables that outlives the commits that DDL
    makes; elsewhere nothing (the version row's lock lasts as long as each step)."""
    if connection.dialect.name not in ("mysql", "mariadb"):
        yield
        return
    name = f"openai_files.upgrade.{tables.version.name}"[:64]
    taken = connection.execute(select(func.get_lock(name, _LOCK_WAIT))).scalar()
    if taken != 1:
        raise TimeoutError(f"another process held the schema upgrade lock {name!r}")
    try:
        yield
    finally:
        connection.execute(select(func.release_lock(name)))


_LOCK_WAIT = 300
"""Seconds a replica waits for another's upgrade (rebuilding large tables takes a while)."""


def _redefine_exact_columns(connection: Connection, table: Table) -> None:
    """``ALTER TABLE ... MODIFY`` every `ExactString` column of ``table`` to its definition
    (those the database has: a later version may add more)."""
    dialect = connection.dialect
    present = {column["name"] for column in inspect(connection).get_columns(table.name)}
    columns = [
        column
        for column in table.columns
        if isinstance(column.type, ExactString) and column.name in present
    ]
    if not columns:
        return
    changes = ", ".join(
        f"MODIFY {CreateColumn(column).compile(dialect=dialect)}" for column in columns
    )
    name = dialect.identifier_preparer.format_table(table)
    connection.execute(text(f"ALTER TABLE {name} {changes}"))


def _recount_usage(connection: Connection, tables: Tables) -> None:
    """Rebuild every owner's usage row from the pending and active files."""
    files, usage = tables.files, tables.usage
    counted = (
        select(files.c.owner, func.count(), func.coalesce(func.sum(files.c.bytes), 0))
        .where(files.c.state.in_(("pending", "active")))
        .group_by(files.c.owner)
    )
    connection.execute(delete(usage))
    # Columns of later versions (``open_uploads``) may not exist yet: server defaults fill them.
    connection.execute(
        insert(usage).from_select(["owner", "files", "bytes"], counted, include_defaults=False)
    )
