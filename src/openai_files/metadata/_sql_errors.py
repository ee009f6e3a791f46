"""The database's errors as the library's: a value the database refuses is the client's to
correct (`InvalidRequest`), anything else an outage to retry (`BackendUnavailable`)."""

from __future__ import annotations

from sqlalchemy.exc import IntegrityError, StatementError

from ..errors import BackendUnavailable, InvalidRequest, OpenAIFilesError

__all__ = ["raise_translated"]


def raise_translated(exc: BaseException, translate_integrity: bool = True) -> None:
    """Raise the library's error for the database's ``exc``; return (to re-raise ``exc``) for
    an error of the library itself, or an integrity error left untranslated."""
    if isinstance(exc, OpenAIFilesError):
        return  # FileNotFound is an OSError too
    if isinstance(exc, IntegrityError):
        if not translate_integrity:
            return
        raise BackendUnavailable("The metadata database refused a write; retry.") from None
    if _refused_value(exc):
        raise InvalidRequest(
            "A value in the request cannot be stored: it holds a character the database "
            "refuses (such as NUL or an unpaired surrogate) or is longer than its field allows. "
            "Correct the value; retrying it unchanged will fail again."
        ) from exc
    raise BackendUnavailable(
        f"The metadata database failed: {type(exc).__name__}. Retry the request."
    ) from exc


_MYSQL_REFUSED_VALUE = frozenset({1264, 1292, 1300, 1366, 1406})
"""MariaDB/MySQL errors about a value, not the server: out of range, incorrect value, invalid
character string, incorrect string value, data too long."""


def _refused_value(exc: BaseException) -> bool:
    """True if ``exc`` says the database (or its driver) cannot take a value of the request,
    which retrying cannot fix: a string the driver cannot encode, PostgreSQL's data exceptions
    (SQLSTATE class 22: a character not in the repertoire, string data right truncation,
    invalid byte sequence, ...), MariaDB's `_MYSQL_REFUSED_VALUE`. Anything else, such as a
    lost connection, stays an outage."""
    seen: set[int] = set()
    error: BaseException | None = exc
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        if isinstance(error, UnicodeError):
            return True
        sqlstate = getattr(error, "sqlstate", None)
        if isinstance(sqlstate, str) and sqlstate.startswith("22"):
            return True
        code = error.args[0] if error.args else None
        if (
            isinstance(code, int)
            and code in _MYSQL_REFUSED_VALUE
            and not isinstance(error, OSError)
        ):
            return True
        orig = error.orig if isinstance(error, StatementError) else None
        error = orig if orig is not None else (error.__cause__ or error.__context__)
    return False
