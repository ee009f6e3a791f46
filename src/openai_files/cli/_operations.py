"""The operations flags of ``openai-files serve``: metrics, the log format, the admin key and
the graceful shutdown's bound (each with its ``OPENAI_FILES_*`` variable)."""

from __future__ import annotations

import argparse
import atexit
import os
import shutil
import tempfile

from ._log_format import LOG_FORMATS

__all__ = [
    "DEFAULT_GRACEFUL_TIMEOUT",
    "add_operations_options",
    "admin_key_from",
    "options_problem",
    "shared_metrics_directory",
]

DEFAULT_GRACEFUL_TIMEOUT = 30.0
ADMIN_KEY_VARIABLE = "OPENAI_FILES_ADMIN_KEY"
MULTIPROCESS_VARIABLE = "PROMETHEUS_MULTIPROC_DIR"


def _env(name: str, default: str) -> str:
    return os.environ.get(f"OPENAI_FILES_{name}", default)


def add_operations_options(serve: argparse.ArgumentParser) -> None:
    """Add ``--no-metrics``, ``--log-format``, ``--admin-key`` and ``--graceful-timeout``."""
    group = serve.add_argument_group("operations")
    group.add_argument(
        "--no-metrics",
        dest="metrics",
        action="store_false",
        default=_env("METRICS", "true").lower() not in {"0", "false", "no", "off"},
        help="do not count Prometheus metrics nor serve GET /metrics (OPENAI_FILES_METRICS=false)",
    )
    group.add_argument(
        "--log-format",
        choices=LOG_FORMATS,
        default=_env("LOG_FORMAT", "text"),
        help="text lines, or one JSON object a line with an access line per request "
        "(request_id, method, path, status, duration_ms, owner, bytes_in, bytes_out) "
        "(default: text; OPENAI_FILES_LOG_FORMAT)",
    )
    group.add_argument(
        "--admin-key",
        default=None,
        metavar="KEY",
        help=f"serve GET /admin/usage (every owner's files and bytes) to this key only "
        f"({ADMIN_KEY_VARIABLE}; default: no admin route)",
    )
    group.add_argument(
        "--graceful-timeout",
        type=float,
        default=float(_env("GRACEFUL_TIMEOUT", str(DEFAULT_GRACEFUL_TIMEOUT))),
        metavar="SECONDS",
        help="after SIGTERM, requests in flight get SECONDS to finish; then they are cut and "
        "what they wrote is removed (default: "
        f"{DEFAULT_GRACEFUL_TIMEOUT:g}; OPENAI_FILES_GRACEFUL_TIMEOUT)",
    )


def admin_key_from(
    args: argparse.Namespace, environ: os._Environ[str] | dict[str, str]
) -> str | None:
    """The admin key of ``--admin-key``, else of ``OPENAI_FILES_ADMIN_KEY``, else None."""
    key: str | None = getattr(args, "admin_key", None)
    if key is None:
        key = environ.get(ADMIN_KEY_VARIABLE) or None
    return key


def options_problem(args: argparse.Namespace, api_keys: dict[str, str]) -> str | None:
    """What is wrong with the operations flags, or None."""
    from ._serve_options import key_problem

    if args.log_format not in LOG_FORMATS:  # argparse does not check a default from the env
        return f"--log-format (OPENAI_FILES_LOG_FORMAT) is text or json, not {args.log_format!r}"
    if args.graceful_timeout < 0:
        return "--graceful-timeout is 0 or more seconds"
    key = admin_key_from(args, os.environ)
    if key is not None:
        if (problem := key_problem(key)) is not None:
            return f"the admin key {problem}"
        if len(key) < 16:
            return "the admin key is shorter than 16 characters: use a long random key"
        if key in api_keys:
            return "the admin key is also an API key: give the admin its own key"
    return None


def shared_metrics_directory() -> None:
    """Put the workers of ``serve --workers N`` in prometheus-client's multiprocess mode: each
    writes its metrics under one directory, removed when ``serve`` exits, and ``/metrics``
    adds them up. A ``PROMETHEUS_MULTIPROC_DIR`` already set is used as it is."""
    if os.environ.get(MULTIPROCESS_VARIABLE):
        return
    directory = tempfile.mkdtemp(prefix="openai-files-metrics-")
    atexit.register(shutil.rmtree, directory, True)
    os.environ[MULTIPROCESS_VARIABLE] = directory
