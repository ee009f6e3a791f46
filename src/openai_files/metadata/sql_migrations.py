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

from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import Connection, Table, delete, func, insert, inspect, select, text, update
from sqlalchemy.schema import CreateColumn

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


MIGRATIONS: tuple[Migration, ...] = (
    Migration(2, "identifiers compared byte for byte on MySQL and MariaDB", _exact_identifiers),
)
assert [step.version for step in MIGRATIONS] == list(range(2, SCHEMA_VERSION + 1))


def upgrade(connection: Connection, tables: Tables, found: int) -> None:
    """Run every step past version ``found``, in order, committing each with the version it
    reaches (``connection`` begins its transactions itself)."""
    version = tables.version
    for step in MIGRATIONS:
        if step.version <= found:
            continue
        step.run(connection, tables)
        connection.execute(
            update(version).where(version.c.version < step.version).values(version=step.version)
        )
        connection.commit()


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
    connection.execute(insert(usage).from_select(["owner", "files", "bytes"], counted))
