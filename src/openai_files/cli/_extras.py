"""The optional extras ``serve`` may need, and the one line that names a missing one.

A base install serves local disk, memory and SQLite. S3 storage needs the ``s3`` extra
(obstore), PostgreSQL the ``postgres`` extra (asyncpg), MariaDB/MySQL the ``mysql`` extra
(aiomysql). `missing_extra` checks before anything is built, so a server asked for a backend
whose driver is absent stops with one line instead of a traceback, in every worker's place.
"""

from __future__ import annotations

import importlib.util
from urllib.parse import urlsplit

__all__ = ["EXTRAS", "missing_extra"]

EXTRAS = {"obstore": "s3", "asyncpg": "postgres", "aiomysql": "mysql"}
"""Each optional driver and the extra that installs it."""


def missing_extra(storage: str, metadata: str) -> str | None:
    """What to install for the backends the two URLs name, or None when all is there."""
    needed = []
    if urlsplit(storage).scheme == "s3":
        needed.append(("obstore", "s3:// storage"))
    scheme = urlsplit(metadata).scheme
    if "+" in scheme:
        dialect, _, driver = scheme.partition("+")
        needed.append((driver, f"{dialect} metadata"))
    for driver, what in needed:
        if importlib.util.find_spec(driver) is None:
            return _install_line(driver, what)
    return None


def _install_line(driver: str, what: str) -> str:
    extra = EXTRAS.get(driver)
    if extra is None:
        return f"{what} needs the {driver} driver, which is not installed: pip install {driver}"
    return (
        f"{what} needs the [{extra}] extra ({driver}), which is not installed: "
        f"pip install 'openai-files[{extra}]' (in a clone of the repository: "
        f"pip install -e '.[{extra}]')"
    )
