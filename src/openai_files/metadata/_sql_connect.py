"""How the SQL store connects: the engine it makes from a URL (the pool for a database
server, PostgreSQL's settings, MariaDB's character set) and the set-up of each new SQLite
connection (write-ahead log, ``synchronous``, waiting for locks)."""

from __future__ import annotations

from collections.abc import Mapping
from functools import partial
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from ._mysql_autocommit import autocommit_settings, use_autocommit

__all__ = [
    "POSTGRES_SETTINGS",
    "SERVER_POOL",
    "SQLITE_SYNCHRONOUS",
    "configure_sqlite",
    "make_engine",
    "postgres_connect_args",
    "sqlite_settings",
    "sqlite_synchronous",
]


def make_engine(url: str, options: Mapping[str, Any] | None) -> tuple[AsyncEngine, str]:
    """The engine of ``url``, and the SQLite ``synchronous`` level its connections are set to
    (`sqlite_synchronous`; the default on other databases, where it means nothing)."""
    parsed = make_url(url)
    # No pre-ping: on PostgreSQL it costs three round trips a checkout. A connection found
    # dead invalidates the pool's older ones, and a read is run again (`_sql_runners`).
    synchronous = SQLITE_SYNCHRONOUS[0]
    if parsed.get_backend_name() == "sqlite":
        parsed, synchronous = sqlite_synchronous(parsed)
        settings = sqlite_settings(None)
    else:
        # Another pool class (NullPool, say) takes neither setting.
        chosen = {"poolclass", "pool"} & set(options or {})
        settings = {} if chosen else dict(SERVER_POOL)
        if parsed.get_backend_name() in {"mysql", "mariadb"} and "charset" not in parsed.query:
            parsed = parsed.update_query_dict({"charset": "utf8mb4"})
    settings.update(options or {})
    if parsed.get_backend_name() == "postgresql" and parsed.get_driver_name() == "asyncpg":
        settings["connect_args"] = postgres_connect_args(settings.get("connect_args"))
    autocommitting = autocommit_settings(parsed, settings)
    engine = create_async_engine(parsed, **(autocommitting or settings))
    if autocommitting is not None:
        use_autocommit(engine)
    if parsed.get_backend_name() == "sqlite":
        event.listen(
            engine.sync_engine, "connect", partial(configure_sqlite, synchronous=synchronous)
        )
    return engine, synchronous


SERVER_POOL: Mapping[str, Any] = {"pool_size": 15, "max_overflow": 0}
"""The pool of an engine the store makes for a database server: at most as many connections as
SQLAlchemy's default pool opens (5, and 10 more under load), each kept once opened. With the
default, more than 5 requests at once opened a connection for each read past the fifth and
closed it after (a connection costs milliseconds of CPU on both sides, more than the read);
now a 16th waits for one of 15 to be free. ``engine_options`` override it, and one that names
its own ``poolclass`` (or ``pool``) goes without it."""


POSTGRES_SETTINGS: Mapping[str, str] = {"enable_sort": "off", "jit": "off"}
"""The PostgreSQL settings of the connections of an engine the store makes: every ordered read
of the store (a page of files, of usage rows) has an index in its order, and with
``enable_sort`` off the planner reads that index as a range from the cursor, whatever the
table's statistics say. Without statistics (a new or fast-grown table before autovacuum's
``ANALYZE``, or autovacuum off) it estimated an owner's files at a handful and read and sorted
every one of them for each page instead: 0.9 ms in the database for a page of 20 at 2,600
files, 0.05 ms from the index. Sorting is only made the planner's last resort, not
forbidden: a statement with no index in its order still runs. ``jit`` is off because its
trigger is the plan's estimated cost, which a disabled sort inflates, and compiling costs
milliseconds that no statement of the store's can win back. Sent in the connection's start-up
packet (asyncpg's ``server_settings``), so it costs no round trip; a value of the same name in
``engine_options["connect_args"]["server_settings"]`` wins."""


def postgres_connect_args(connect_args: Mapping[str, Any] | None) -> dict[str, Any]:
    """asyncpg's ``connect_args`` with `POSTGRES_SETTINGS` under those of ``connect_args``."""
    merged = dict(connect_args or {})
    merged["server_settings"] = {**POSTGRES_SETTINGS, **merged.get("server_settings", {})}
    return merged


def sqlite_settings(options: Mapping[str, Any] | None) -> dict[str, Any]:
    """The engine settings of a SQLite file: ``options`` over the defaults."""
    return {"connect_args": {"timeout": 30}, **(options or {})}


SQLITE_SYNCHRONOUS = ("FULL", "NORMAL")
"""The values of SQLite's ``synchronous`` setting a store URL may ask for; the first is the
default."""


def sqlite_synchronous(url: URL) -> tuple[URL, str]:
    """``url`` without its ``synchronous`` query option, and the setting it asks for.

    ``FULL`` (the default) flushes the write-ahead log at every commit, so a committed file
    record survives a power cut; ``?synchronous=normal`` flushes it only at checkpoints,
    which is faster but may lose the last commits on power loss (never on a crash of the
    process). `ValueError` for any other value.
    """
    value = url.query.get("synchronous", SQLITE_SYNCHRONOUS[0])
    level = (value if isinstance(value, str) else value[-1]).upper()
    if level not in SQLITE_SYNCHRONOUS:
        raise ValueError(
            f"synchronous={value!r} in the SQLite URL: use synchronous=full (durable, the "
            "default) or synchronous=normal (faster; the last commits may be lost on power loss)"
        )
    return url.difference_update_query(["synchronous"]), level


def configure_sqlite(connection: Any, _record: Any, *, synchronous: str = "FULL") -> None:
    """Set up a new SQLite connection: write-ahead log, ``synchronous`` (see
    `sqlite_synchronous`), and waiting up to 30 s for a lock instead of failing."""
    cursor = connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute(f"PRAGMA synchronous={synchronous}")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()
