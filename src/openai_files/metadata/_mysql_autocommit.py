"""MariaDB and MySQL connections in the server's autocommit mode, so that a read is one round
trip.

With autocommit off (the driver's default), a ``SELECT`` on InnoDB opens a transaction that
holds a snapshot until it ends: every read had to be followed by a ``ROLLBACK``, a second round
trip, sent by the pool when the connection went back to it. For an engine the store makes
from a URL with ``aiomysql``, the connections are opened in autocommit mode instead
(`autocommit_settings`): a read outside a transaction is one statement, committed by the
server, and leaves nothing to roll back.

A transaction is then begun explicitly: the engine's ``begin`` event sends ``START
TRANSACTION`` (`use_autocommit`), so writes, schema changes and migrations stay atomic as
before, and SQLAlchemy's ``COMMIT`` or ``ROLLBACK`` ends them; that costs a transaction one
more round trip. A read run through SQLAlchemy marks its connection with `AUTOCOMMIT_READ` and
begins no transaction: it runs in autocommit mode, as reads do on PostgreSQL.

A rollback (SQLAlchemy's, or the pool's reset when a connection goes back to it) is sent only
when the server reported a transaction open on the connection (the ``SERVER_STATUS_IN_TRANS``
flag of its last reply): after a read there is none, and nothing is sent; a connection given
back inside a transaction is rolled back, and let go of if that fails, as before.

An engine the host passes is left as it is (its reads pay the ``ROLLBACK``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from functools import partial
from typing import Any

from sqlalchemy import Connection, event
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import AsyncEngine

__all__ = ["AUTOCOMMIT_READ", "autocommit_settings", "autocommits", "use_autocommit"]

AUTOCOMMIT_READ = "openai_files_autocommit_read"
"""The execution option that marks a connection running a read: no transaction is begun."""


def autocommit_settings(url: URL, settings: Mapping[str, Any]) -> dict[str, Any] | None:
    """``settings`` for ``create_async_engine`` with the connections of an ``aiomysql`` URL in
    autocommit mode; None for another driver, or where ``settings`` choose an isolation level
    or an autocommit mode of their own."""
    if url.get_backend_name() not in {"mysql", "mariadb"} or url.get_driver_name() != "aiomysql":
        return None
    connect_args = dict(settings.get("connect_args") or {})
    if "isolation_level" in settings or "autocommit" in connect_args:
        return None
    connect_args["autocommit"] = True
    return {**settings, "connect_args": connect_args}


def use_autocommit(engine: AsyncEngine) -> None:
    """Make every transaction on ``engine`` (made with `autocommit_settings`) begin with
    ``START TRANSACTION``, except on a connection marked with `AUTOCOMMIT_READ`, and every
    rollback go to the server only while it has a transaction open."""
    sync_engine = engine.sync_engine
    event.listen(sync_engine, "begin", _begin)
    dialect = sync_engine.dialect
    dialect.do_rollback = partial(_rollback_if_open, dialect.do_rollback)  # type: ignore[method-assign]


def autocommits(engine: AsyncEngine) -> bool:
    """True if ``engine``'s connections are in autocommit mode (`use_autocommit`)."""
    return event.contains(engine.sync_engine, "begin", _begin)


def _begin(connection: Connection) -> None:
    if not connection.get_execution_options().get(AUTOCOMMIT_READ):
        connection.exec_driver_sql("START TRANSACTION")


def _rollback_if_open(rollback: Callable[[Any], None], dbapi_connection: Any) -> None:
    driver: Any = getattr(dbapi_connection, "driver_connection", None)
    # A closed connection has no status: its rollback fails as it always did.
    if getattr(driver, "server_status", None) is not None and not driver.get_transaction_status():
        return  # no transaction open: nothing to end, no round trip
    rollback(dbapi_connection)
