"""MariaDB and MySQL connections in the server's autocommit mode, so that a read is one round
trip.

With autocommit off (the driver's default), a ``SELECT`` on InnoDB opens a transaction that
holds a snapshot until it ends: every read had to be followed by a ``ROLLBACK``, a second round
trip, sent by the pool when the connection went back to it. For an engine the store makes
from a URL with ``aiomysql``, the connections are opened in autocommit mode instead
(`autocommit_settings`): a read outside a transaction is one statement, committed by the
server, and nothing is left to roll back, so the pool resets nothing on return.

A transaction is then begun explicitly: the engine's ``begin`` event sends ``START
TRANSACTION`` (`start_transactions`), so writes, schema changes and migrations stay atomic
as before, and SQLAlchemy's ``COMMIT`` or ``ROLLBACK`` ends them; that costs a write one more
round trip. A read run through SQLAlchemy marks its connection with `AUTOCOMMIT_READ` and
begins no transaction: it runs in autocommit mode, as reads do on PostgreSQL.

An engine the host passes is left as it is (its reads pay the ``ROLLBACK``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy import Connection, event
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import AsyncEngine

__all__ = ["AUTOCOMMIT_READ", "autocommit_settings", "autocommits", "start_transactions"]

AUTOCOMMIT_READ = "openai_files_autocommit_read"
"""The execution option that marks a connection running a read: no transaction is begun."""


def autocommit_settings(url: URL, settings: Mapping[str, Any]) -> dict[str, Any] | None:
    """``settings`` for ``create_async_engine`` with the connections of an ``aiomysql`` URL in
    autocommit mode and no reset on return; None for another driver, or where ``settings``
    choose their own pool, reset or autocommit mode."""
    if url.get_backend_name() not in {"mysql", "mariadb"} or url.get_driver_name() != "aiomysql":
        return None
    connect_args = dict(settings.get("connect_args") or {})
    chosen = {"poolclass", "pool", "pool_reset_on_return", "isolation_level"}
    if chosen & set(settings) or "autocommit" in connect_args:
        return None
    connect_args["autocommit"] = True
    # SQLAlchemy's `Connection` ends its own transaction before it gives its connection back;
    # a read outside one leaves nothing to reset.
    return {**settings, "connect_args": connect_args, "pool_reset_on_return": None}


def start_transactions(engine: AsyncEngine) -> None:
    """Make every transaction on ``engine`` (connections in autocommit mode) begin with
    ``START TRANSACTION``, except on a connection marked with `AUTOCOMMIT_READ`."""
    event.listen(engine.sync_engine, "begin", _begin)


def autocommits(engine: AsyncEngine) -> bool:
    """True if ``engine``'s connections are in autocommit mode (`start_transactions`)."""
    return event.contains(engine.sync_engine, "begin", _begin)


def _begin(connection: Connection) -> None:
    if not connection.get_execution_options().get(AUTOCOMMIT_READ):
        connection.exec_driver_sql("START TRANSACTION")
