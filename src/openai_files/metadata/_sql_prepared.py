"""A SQLAlchemy Core statement compiled once and then run on the driver itself, for the store's
hottest reads (and, on SQLite, the writes of a small file's create): SQLAlchemy builds the SQL
(so the schema, the table prefix and each dialect's casts stay in one place), and each run
costs the driver's own call, not SQLAlchemy's execution of a statement (its compiled cache,
its execution context, its result objects).

`Compiled` is the statement and how the named parameters of a call become the driver's
positional ones, with the values of the statement's own literals (``state = 'active'``) and
each type's bind processor; it refuses, with a `ValueError`, a statement with expanding
(``IN``) or literal-execute parameters, column defaults computed at execution (an INSERT
that leaves out a column with a Python-side default) or a driver without positional
parameters. Its
``plain`` says that no value needs SQLAlchemy's processing on the way in or out: the direct
reads on PostgreSQL and MariaDB (``_sql_direct``) take only such statements.

`Prepared` runs one on a ``sqlite3`` connection (``?`` parameters): a SELECT for its rows
(`Prepared.rows`), an INSERT or UPDATE for its row count (`Prepared.execute`, inside the
transaction the connection has open). It keeps what SQLAlchemy would do that still matters:

- rows come back as tuples in the statement's column order, through each type's result
  processor (none, for the store's columns on SQLite);
- the connection's ``before_cursor_execute`` and ``after_cursor_execute`` events are fired
  around the driver's call when something listens (``context`` is None), so whatever counts or
  inspects the store's statements on its ``statement_engines`` sees these too;
- the driver's errors are raised as SQLAlchemy's (`sqlalchemy.exc.DBAPIError.instance`), which
  the store translates in one place.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from operator import itemgetter
from typing import Any, TypeVar

from sqlalchemy import Connection
from sqlalchemy.engine import Dialect
from sqlalchemy.exc import DBAPIError
from sqlalchemy.sql import Insert, Select, Update

__all__ = ["Compiled", "Prepared"]

Row = tuple[Any, ...]
_R = TypeVar("_R")


Statement = Select[Any] | Insert | Update
"""What `Compiled` takes: a SELECT, or an INSERT or UPDATE without RETURNING."""


class Compiled:
    """The ``statement`` compiled for ``dialect``, and the driver's arguments for it."""

    def __init__(self, statement: Statement, dialect: Dialect) -> None:
        compiled = statement.compile(dialect=dialect)
        if compiled.positiontup is None:
            raise ValueError(f"{dialect.name}: only a driver with positional parameters")
        if compiled.literal_execute_params or compiled.post_compile_params:
            raise ValueError(f"expanding parameters cannot be prepared: {compiled}")
        if compiled.insert_prefetch or compiled.update_prefetch:
            # A column default SQLAlchemy computes at each execution: not a literal to keep.
            raise ValueError(f"execution-time column defaults cannot be prepared: {compiled}")
        self.sql = str(compiled)
        names = tuple(compiled.positiontup)
        # The statement's own literals (``state = 'active'``) are parameters too.
        self._literals = {
            name: compiled.binds[name].effective_value
            for name in names
            if not compiled.binds[name].required
        }
        self._ordered = _getter(names)
        bound = [compiled.binds[name].type.dialect_impl(dialect) for name in names]
        self._binds = _processors([kind.bind_processor(dialect) for kind in bound])
        columns = statement.selected_columns if isinstance(statement, Select) else ()
        selected = [column.type.dialect_impl(dialect) for column in columns]
        self._results = _processors([kind.result_processor(dialect, None) for kind in selected])

    @property
    def plain(self) -> bool:
        """True if no value needs SQLAlchemy's processing, in the parameters or the rows."""
        return self._binds is None and self._results is None

    def arguments(self, parameters: Mapping[str, Any]) -> Row:
        """The driver's positional arguments for ``parameters`` (by name)."""
        values = {**self._literals, **parameters} if self._literals else parameters
        ordered = self._ordered(values)
        if self._binds is not None:
            ordered = tuple(
                value if process is None else process(value)
                for value, process in zip(ordered, self._binds, strict=True)
            )
        return ordered


class Prepared(Compiled):
    """A `Compiled` statement run by `rows` on the ``sqlite3`` connection of a `Connection`."""

    def __init__(self, statement: Statement, dialect: Dialect) -> None:
        if dialect.paramstyle != "qmark":
            raise ValueError(f"{dialect.name}: only a driver with ? parameters runs prepared")
        super().__init__(statement, dialect)
        self._error = dialect.loaded_dbapi.Error

    def rows(self, connection: Connection, parameters: Mapping[str, Any]) -> Sequence[Row]:
        """Every row of the statement run with ``parameters`` on ``connection``'s DB-API
        connection, the cursor closed (so that no read stays open in SQLite)."""
        rows: Sequence[Row] = self._run(connection, parameters, _fetch_all)
        if self._results is None:
            return rows
        processors = self._results
        return [
            tuple(
                value if process is None else process(value)
                for value, process in zip(row, processors, strict=True)
            )
            for row in rows
        ]

    def execute(self, connection: Connection, parameters: Mapping[str, Any]) -> int:
        """Run the INSERT or UPDATE with ``parameters`` on ``connection``'s DB-API connection,
        in the transaction open there; the number of rows it changed."""
        count: int = self._run(connection, parameters, _row_count)
        return count

    def _run(
        self,
        connection: Connection,
        parameters: Mapping[str, Any],
        outcome: Callable[[Any], _R],
    ) -> _R:
        """Run the statement on a new cursor of ``connection``'s DB-API connection, between the
        connection's cursor events, as SQLAlchemy would; ``outcome`` of the cursor (the driver's
        errors raised as SQLAlchemy's), the cursor closed."""
        arguments = self.arguments(parameters)
        dispatch = connection.dispatch
        cursor = connection.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
        try:
            if dispatch.before_cursor_execute:
                for listener in dispatch.before_cursor_execute:
                    listener(connection, cursor, self.sql, arguments, None, False)
            try:
                cursor.execute(self.sql, arguments)
                result = outcome(cursor)
            except self._error as exc:
                raise DBAPIError.instance(self.sql, arguments, exc, self._error) from exc
            if dispatch.after_cursor_execute:
                for listener in dispatch.after_cursor_execute:
                    listener(connection, cursor, self.sql, arguments, None, False)
        finally:
            cursor.close()
        return result


def _fetch_all(cursor: Any) -> Sequence[Row]:
    rows: Sequence[Row] = cursor.fetchall()
    return rows


def _row_count(cursor: Any) -> int:
    count: int = cursor.rowcount
    return count


def _getter(names: tuple[str, ...]) -> Callable[[Mapping[str, Any]], Row]:
    """The values of ``names`` from a mapping, as a tuple in that order."""
    if len(names) > 1:
        return itemgetter(*names)
    return lambda values: tuple(values[name] for name in names)


def _processors(
    processors: Sequence[Callable[[Any], Any] | None],
) -> tuple[Callable[[Any], Any] | None, ...] | None:
    """``processors``, or None when there is none to apply."""
    return tuple(processors) if any(p is not None for p in processors) else None
