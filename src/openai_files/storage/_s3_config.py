"""How an `S3Storage` is configured: obstore's two stores made from its arguments, and its
arguments read from an ``s3://bucket/prefix?...`` URL."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, unquote, urlsplit

from obstore.exceptions import BaseError
from obstore.store import S3Store

from ._s3_errors import first_line

if TYPE_CHECKING:
    from obstore.store import ClientConfig, RetryConfig, S3Config

__all__ = [
    "S3Bucket",
    "env_flag",
    "env_says_true",
    "normalise_prefix",
    "obstore_stores",
    "url_arguments",
]

RETRY_WINDOW = timedelta(seconds=15)
"""No request is retried once this long has passed since its first attempt."""

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}
_URL_OPTIONS = {"endpoint", "region", "allow_http", "part_size", "parts_in_flight"}


@dataclass(frozen=True)
class S3Bucket:
    """The bucket an `S3Storage` keeps its objects in, where it is and as whom the storage asks:
    its arguments as given, each None where obstore (and `multipart_client`) read the
    ``AWS_*`` environment instead. Both of its clients are made from one `S3Bucket`; the
    secrets are left out of its ``repr``."""

    name: str
    endpoint: str | None = None
    region: str | None = None
    access_key_id: str | None = None
    secret_access_key: str | None = field(default=None, repr=False)
    session_token: str | None = field(default=None, repr=False)


def obstore_stores(
    bucket: S3Bucket,
    *,
    allow_http: bool,
    connect_timeout: float,
    read_timeout: float,
    commit_timeout: float,
    timeout: float,
    max_retries: int,
) -> tuple[S3Store, S3Store]:
    """The store for reads and the store for writes, whose read timeout is ``commit_timeout``
    (a multipart upload's final request may take that long to answer). What is None in
    ``bucket`` comes from obstore's reading of the ``AWS_*`` environment; `ValueError` names
    what is wrong."""
    given = {
        "endpoint": bucket.endpoint,
        "region": bucket.region,
        "access_key_id": bucket.access_key_id,
        "secret_access_key": bucket.secret_access_key,
        "session_token": bucket.session_token,
    }
    config: S3Config = {name: value for name, value in given.items() if value is not None}  # type: ignore[assignment]
    # Passing client options replaces the ones obstore would read from the environment, which
    # is why the caller reads AWS_ALLOW_HTTP itself.
    client: ClientConfig = {
        "allow_http": allow_http,
        "connect_timeout": timedelta(seconds=connect_timeout),
        "read_timeout": timedelta(seconds=read_timeout),
        "timeout": timedelta(seconds=timeout),
    }
    retry: RetryConfig = {
        "max_retries": max_retries,
        "retry_timeout": RETRY_WINDOW,
        "backoff": {
            "init_backoff": timedelta(milliseconds=100),
            "max_backoff": timedelta(seconds=2),
        },
    }
    writes: ClientConfig = {**client, "read_timeout": timedelta(seconds=commit_timeout)}
    try:
        return (
            S3Store(bucket.name, config=config, client_options=client, retry_config=retry),
            S3Store(bucket.name, config=config, client_options=writes, retry_config=retry),
        )
    except BaseError as exc:
        raise ValueError(f"invalid S3 storage configuration: {first_line(exc)}") from exc


def url_arguments(url: str) -> tuple[str, dict[str, Any]]:
    """The bucket and the keyword arguments of `S3Storage` that ``url`` gives
    (``s3://bucket/prefix?endpoint=...&region=...&allow_http=...&part_size=...&parts_in_flight=...``);
    `ValueError` for anything else, credentials in the URL included."""
    parts = urlsplit(url)
    if parts.scheme != "s3" or not parts.netloc:
        raise ValueError(f"not an S3 storage URL: {url!r}; use s3://bucket/prefix")
    if "@" in parts.netloc:
        raise ValueError("put S3 credentials in AWS_* environment variables, not in the URL")
    options = dict(parse_qsl(parts.query, keep_blank_values=True))
    unknown = sorted(set(options) - _URL_OPTIONS)
    if unknown:
        raise ValueError(
            f"unknown S3 storage URL option(s) {', '.join(unknown)}; "
            f"known: {', '.join(sorted(_URL_OPTIONS))}"
        )
    arguments: dict[str, Any] = {
        "prefix": unquote(parts.path),
        "endpoint": options.get("endpoint") or None,
        "region": options.get("region") or None,
    }
    if "allow_http" in options:
        arguments["allow_http"] = _parse_flag("allow_http", options["allow_http"])
    for name in ("part_size", "parts_in_flight"):
        if name in options:
            arguments[name] = _parse_int(name, options[name])
    return unquote(parts.netloc), arguments


def normalise_prefix(prefix: str) -> str:
    """``prefix`` without slashes around it, then with one after it (empty stays empty)."""
    prefix = prefix.strip("/")
    return f"{prefix}/" if prefix else ""


def env_flag(name: str) -> bool:
    """The environment variable ``name`` read as true or false (unset: false)."""
    return _parse_flag(name, os.environ.get(name, ""))


def env_says_true(name: str) -> bool:
    """True if the environment variable ``name`` is one of the words `env_flag` reads as true;
    anything else, unset or not a flag, is false (where obstore reads the variable itself and
    only needs to know whether it is on)."""
    return os.environ.get(name, "").strip().lower() in _TRUE


def _parse_flag(name: str, value: str) -> bool:
    lowered = value.strip().lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise ValueError(f"{name} must be true or false, not {value!r}")


def _parse_int(name: str, value: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"{name} must be a whole number, not {value!r}") from None
