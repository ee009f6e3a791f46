"""The ``openai-files`` command: ``openai-files serve`` runs the standalone server; ``upload``,
``list``, ``get``, ``download`` and ``delete`` are a client of any OpenAI-compatible Files API
(`openai_files.client_cli`).

Every ``serve`` flag has an environment variable (``OPENAI_FILES_*``); a flag given on the
command line wins over the variable, which wins over the default. The client commands read
``OPENAI_BASE_URL`` and ``OPENAI_API_KEY``, as the openai SDKs do.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence

from ..metadata.base import DEFAULT_TABLE_PREFIX
from ..policy import Policy
from ._admin_commands import add_admin_commands, run_admin_command
from ._base_url import DEFAULT_BASE_URL
from ._extras import missing_extra
from ._operations import add_operations_options, options_problem, shared_metrics_directory
from ._serve_options import HTTP_CHOICES, LOOP_CHOICES, policy_from_args, server_settings
from ._storage_options import (
    add_rewrap_command,
    add_storage_flags,
    check_storage_flags,
    run_rewrap,
)

__all__ = ["build_parser", "main"]

log = logging.getLogger("openai_files")

DEFAULT_MAX_FILE_SIZE = Policy().max_file_size
DEFAULT_MAX_UPLOAD_SIZE = Policy().upload_limit
DEFAULT_MAX_OPEN_UPLOADS = Policy().max_open_uploads
DEFAULT_HEADER_TIMEOUT = 10.0


def _env(name: str, default: str) -> str:
    return os.environ.get(f"OPENAI_FILES_{name}", default)


def build_parser(*, serve_flags: bool = True) -> argparse.ArgumentParser:
    """The command line; without ``serve_flags``, ``serve`` takes no flags and the server's
    modules stay unimported (what the client commands and ``--help`` need)."""
    parser = argparse.ArgumentParser(
        prog="openai-files",
        description="An OpenAI-compatible Files API server, and a client for any such API.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser(
        "serve",
        help="run the Files API server",
        description="Serve /files and /v1/files. Each flag also reads OPENAI_FILES_<FLAG>.",
    )
    if not serve_flags:
        _add_client_commands(commands)
        add_rewrap_command(commands)
        add_admin_commands(commands)
        return parser
    from ..http import FormLimits

    body_timeout = FormLimits().body_timeout or 0.0
    serve.add_argument("--host", default=_env("HOST", "127.0.0.1"), help="(OPENAI_FILES_HOST)")
    serve.add_argument(
        "--port", type=int, default=int(_env("PORT", "8000")), help="(OPENAI_FILES_PORT)"
    )
    serve.add_argument(
        "--data-dir",
        default=_env("DATA_DIR", "./data"),
        help="where the default storage and SQLite database live (OPENAI_FILES_DATA_DIR)",
    )
    serve.add_argument(
        "--storage",
        default=os.environ.get("OPENAI_FILES_STORAGE"),
        help="storage URL: file:///path, memory:// (default: file://DATA_DIR/files; "
        "OPENAI_FILES_STORAGE)",
    )
    serve.add_argument(
        "--metadata",
        default=os.environ.get("OPENAI_FILES_METADATA"),
        help="metadata URL: a SQLAlchemy async URL or memory:// "
        "(default: sqlite+aiosqlite:///DATA_DIR/files.db; OPENAI_FILES_METADATA)",
    )
    serve.add_argument(
        "--table-prefix",
        default=_env("TABLE_PREFIX", DEFAULT_TABLE_PREFIX),
        help="prefix of the SQL metadata tables (OPENAI_FILES_TABLE_PREFIX)",
    )
    serve.add_argument(
        "--api-key",
        action="append",
        default=None,
        metavar="KEY[=OWNER]",
        help="accept this API key, for OWNER; repeatable (OPENAI_FILES_API_KEYS, "
        "comma-separated). The owner follows the LAST '=' (owners have no '=', no spaces, "
        "1-255 characters); a KEY alone or ending in '=' (base64 padding) stands for the "
        "owner 'key-' + 16 hex digits of its SHA-256, shown at start (keys are never stored). "
        "Keys are printable ASCII without spaces. With no key option at all the server is "
        "open; one that gives no valid key stops it from starting.",
    )
    serve.add_argument(
        "--api-keys-file",
        default=None,
        metavar="PATH",
        help="API keys from a file: one 'KEY OWNER' per line (blank lines and # comments "
        'skipped), or, for a PATH ending in .json, one JSON object {"KEY": "OWNER"}; for '
        "any key, whatever its characters (OPENAI_FILES_API_KEYS_FILE). Adds to --api-key.",
    )
    serve.add_argument(
        "--max-file-size",
        type=int,
        default=int(_env("MAX_FILE_SIZE", str(DEFAULT_MAX_FILE_SIZE))),
        help=f"largest upload in bytes (default {DEFAULT_MAX_FILE_SIZE}; "
        "OPENAI_FILES_MAX_FILE_SIZE)",
    )
    serve.add_argument(
        "--max-upload-size",
        type=int,
        default=int(_env("MAX_UPLOAD_SIZE", str(DEFAULT_MAX_UPLOAD_SIZE))),
        help="largest file the Uploads API may assemble, in bytes "
        f"(default {DEFAULT_MAX_UPLOAD_SIZE}; OPENAI_FILES_MAX_UPLOAD_SIZE)",
    )
    serve.add_argument(
        "--max-open-uploads",
        type=int,
        default=int(_env("MAX_OPEN_UPLOADS", str(DEFAULT_MAX_OPEN_UPLOADS))),
        metavar="N",
        help="most Uploads API uploads one owner may have open at once; 0 for no bound "
        f"(default {DEFAULT_MAX_OPEN_UPLOADS}; OPENAI_FILES_MAX_OPEN_UPLOADS)",
    )
    serve.add_argument(
        "--no-uploads-api",
        dest="uploads_api",
        action="store_false",
        default=_env("UPLOADS_API", "true").lower() not in {"0", "false", "no", "off"},
        help="do not serve the Uploads API: /v1/uploads answers 404 "
        "(OPENAI_FILES_UPLOADS_API=false)",
    )
    serve.add_argument(
        "--no-fsync",
        dest="fsync",
        action="store_false",
        default=_env("FSYNC", "true").lower() not in {"0", "false", "no", "off"},
        help="faster small uploads, not durable on power loss: skip flushing local files to the "
        "device (file:// storage) and SQLite's commits (synchronous=NORMAL); a crash of the "
        "process still loses nothing created (OPENAI_FILES_FSYNC=false)",
    )
    serve.add_argument(
        "--file-too-large-status",
        type=int,
        choices=(413, 400),
        default=_optional_int(_env("FILE_TOO_LARGE_STATUS", "")),
        help="the HTTP status of file_too_large errors: 413 (OpenAI's, the default) or 400, as "
        "some platforms answer (OPENAI_FILES_FILE_TOO_LARGE_STATUS)",
    )
    serve.add_argument(
        "--policy",
        default=_env("POLICY", "") or None,
        metavar="FILE.py:NAME|MODULE:NAME",
        help="the Policy object NAME of a Python file or module, e.g. "
        "examples/policies/xai.py:POLICY, instead of the lifecycle flags (OPENAI_FILES_POLICY)",
    )
    serve.add_argument(
        "--presigned-downloads",
        type=int,
        default=int(_env("PRESIGNED_DOWNLOADS", "0")),
        metavar="SECONDS",
        help="answer content downloads with a 307 redirect to a URL presigned for SECONDS, "
        "when the storage can sign URLs (S3); 0 turns it off (OPENAI_FILES_PRESIGNED_DOWNLOADS)",
    )
    serve.add_argument(
        "--max-files",
        type=int,
        default=_optional_int(_env("MAX_FILES", "")),
        help="most files one owner may store (default: no limit; OPENAI_FILES_MAX_FILES)",
    )
    serve.add_argument(
        "--max-bytes",
        type=int,
        default=_optional_int(_env("MAX_BYTES", "")),
        help="most bytes one owner may store (default: no limit; OPENAI_FILES_MAX_BYTES)",
    )
    serve.add_argument(
        "--default-expiry",
        action="append",
        default=None,
        metavar="PURPOSE=SECONDS",
        help="files of PURPOSE expire SECONDS after creation unless the client says otherwise; "
        "SECONDS 'never' turns it off; repeatable (default: batch=2592000; "
        "OPENAI_FILES_DEFAULT_EXPIRY, comma-separated)",
    )
    serve.add_argument(
        "--sweep-interval",
        type=float,
        default=float(_env("SWEEP_INTERVAL", "60")),
        metavar="SECONDS",
        help="remove expired files and leftovers every SECONDS; 0 turns the sweeper off "
        "(OPENAI_FILES_SWEEP_INTERVAL)",
    )
    serve.add_argument(
        "--stale-after",
        type=int,
        default=int(_env("STALE_AFTER", "3600")),
        metavar="SECONDS",
        help="an upload or a delete still unfinished after SECONDS counts as dead and the "
        "sweeper removes what it left; longer than your slowest upload (default: 3600; "
        "OPENAI_FILES_STALE_AFTER)",
    )
    serve.add_argument(
        "--validation",
        choices=["strict", "lenient", "off"],
        default=_env("VALIDATION", "strict"),
        help="what a batch or fine-tune file that is not valid JSONL gets: refused (strict), "
        "stored with status 'error' (lenient), or no check (off) (OPENAI_FILES_VALIDATION)",
    )
    serve.add_argument(
        "--soft-delete",
        action="store_true",
        default=_env("SOFT_DELETE", "false").lower() in {"1", "true", "yes"},
        help="keep deleted files' records with status 'deleted' (OPENAI_FILES_SOFT_DELETE)",
    )
    serve.add_argument(
        "--header-timeout",
        type=float,
        default=float(_env("HEADER_TIMEOUT", str(DEFAULT_HEADER_TIMEOUT))),
        metavar="SECONDS",
        help="close a connection whose request headers are not complete within SECONDS of "
        f"its start or of the previous response; 0 turns it off (default: "
        f"{DEFAULT_HEADER_TIMEOUT:g}; OPENAI_FILES_HEADER_TIMEOUT)",
    )
    serve.add_argument(
        "--body-timeout",
        type=float,
        default=float(_env("BODY_TIMEOUT", str(body_timeout))),
        metavar="SECONDS",
        help="end with 408 a request body that takes longer than SECONDS in all (a body "
        "slower than 1 KiB/s or that pauses 60 s ends sooner); the largest file must fit in it "
        "at your slowest clients' rate, and keep it at or below --stale-after; 0 turns it off "
        f"(default: {body_timeout:g}; OPENAI_FILES_BODY_TIMEOUT)",
    )
    serve.add_argument(
        "--workers",
        type=_positive,
        default=_env("WORKERS", "1"),
        metavar="N",
        help="serve from N processes on the one port, sharing the storage and the database "
        "(default: 1; OPENAI_FILES_WORKERS)",
    )
    serve.add_argument(
        "--http",
        choices=HTTP_CHOICES,
        default=_env("HTTP", "auto"),
        help="the HTTP/1.1 implementation: httptools, h11, or auto: httptools when installed "
        "(default: auto; OPENAI_FILES_HTTP)",
    )
    serve.add_argument(
        "--loop",
        choices=LOOP_CHOICES,
        default=_env("LOOP", "auto"),
        help="the event loop: uvloop, asyncio, or auto: uvloop when installed "
        "(default: auto; OPENAI_FILES_LOOP)",
    )
    serve.add_argument(
        "--log-level", default=_env("LOG_LEVEL", "info"), help="(OPENAI_FILES_LOG_LEVEL)"
    )
    add_storage_flags(serve, os.environ)
    add_operations_options(serve)
    _add_client_commands(commands)
    add_rewrap_command(commands)
    add_admin_commands(commands)
    return parser


def _positive(text: str) -> int:
    value = _optional_int(text) if text.strip().isdecimal() else None
    if value is None or value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, not {text!r}")
    return value


def _add_client_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``upload``, ``list``, ``get``, ``download`` and ``delete`` to ``commands``."""
    connection = argparse.ArgumentParser(add_help=False)
    group = connection.add_argument_group("connection")
    group.add_argument(
        "--base-url",
        metavar="URL",
        default=os.environ.get("OPENAI_BASE_URL") or DEFAULT_BASE_URL,
        help=f"the API's base URL, ending in /v1 (OPENAI_BASE_URL; default {DEFAULT_BASE_URL}, "
        "the local 'openai-files serve'); another server is named on stderr",
    )
    group.add_argument(
        "--api-key",
        metavar="KEY",
        default=os.environ.get("OPENAI_API_KEY") or None,
        help="sent as 'Authorization: Bearer KEY' (OPENAI_API_KEY; default: none)",
    )
    transfer = argparse.ArgumentParser(add_help=False)
    transfer.add_argument(
        "--no-progress",
        action="store_true",
        help="no progress bar (one is shown only when stderr is a terminal)",
    )
    as_json = argparse.ArgumentParser(add_help=False)
    as_json.add_argument("--json", action="store_true", help="print the JSON object(s), one a line")

    up = commands.add_parser(
        "upload", parents=[connection, transfer, as_json], help="upload a file; prints its id"
    )
    up.add_argument("file", metavar="FILE")
    up.add_argument("--purpose", required=True, help="assistants, batch, fine-tune, ...")
    up.add_argument(
        "--expires-after", type=_positive, metavar="SECONDS", help="expire SECONDS after creation"
    )
    up.add_argument(
        "--uploads-api",
        action="store_true",
        help="send the file in parts through the Uploads API, several at once; an interrupted "
        "upload resumes from the parts sent (kept in FILE.upload.json). Automatic for files "
        "over 512 MiB or over the server's single-request limit",
    )
    up.add_argument(
        "--part-size", type=_positive, metavar="BYTES", help="bytes per part (default: 64 MiB)"
    )

    ls = commands.add_parser("list", parents=[connection, as_json], help="list files")
    ls.add_argument("--purpose", help="only files of this purpose")
    ls.add_argument("--limit", type=_positive, metavar="N", help="files per page")
    ls.add_argument("--order", choices=["asc", "desc"], help="by creation time (server: desc)")
    ls.add_argument("--after", metavar="ID", help="start after this file id")
    ls.add_argument("--all", action="store_true", help="every page, until has_more is false")

    show = commands.add_parser("get", parents=[connection, as_json], help="show one file")
    show.add_argument("file_id", metavar="ID")

    down = commands.add_parser(
        "download", parents=[connection, transfer], help="download a file's content"
    )
    down.add_argument("file_id", metavar="ID")
    down.add_argument(
        "-o",
        "--output",
        metavar="PATH",
        help="where to write (default: the file's name, made safe, in the current directory); "
        "an interrupted download, kept in PATH.part, is resumed",
    )
    down.add_argument(
        "--force",
        action="store_true",
        help="overwrite an existing PATH, and replace side files that are not this file's",
    )

    remove = commands.add_parser("delete", parents=[connection], help="delete a file")
    remove.add_argument("file_id", metavar="ID")


def _optional_int(value: str) -> int | None:
    return int(value) if value.strip() else None


def serve(args: argparse.Namespace) -> int:
    from ._serve_app import announce, build_app, configure_logging, worker_environment
    from ._server import run_server  # uvicorn, only to serve
    from ._startup_checks import backends_answer

    configure_logging(args.log_level, log_format=args.log_format)
    try:
        storage, metadata, api_keys = server_settings(args)
        policy_from_args(args)
        check_storage_flags(args)
    except (ValueError, ImportError) as exc:
        print(f"openai-files serve: error: {exc}", file=sys.stderr)
        return 2
    if (missing := missing_extra(storage, metadata)) is not None:
        print(f"openai-files serve: error: {missing}", file=sys.stderr)
        return 1
    if (problem := options_problem(args, api_keys)) is not None:
        print(f"openai-files serve: error: {problem}", file=sys.stderr)
        return 2
    if args.file_too_large_status not in (None, 400, 413):
        print("openai-files serve: error: the file too large status is 413 or 400", file=sys.stderr)
        return 2
    for name, value, choices in (
        ("http", args.http, HTTP_CHOICES),
        ("loop", args.loop, LOOP_CHOICES),
    ):
        if value not in choices:  # argparse does not check a default read from the environment
            print(
                f"openai-files serve: error: --{name} (OPENAI_FILES_{name.upper()}) is one of "
                f"{', '.join(choices)}, not {value!r}",
                file=sys.stderr,
            )
            return 2
    announce(args)
    if not backends_answer(args):
        return 1
    if args.workers == 1:
        return run_server(args, build_app(args))
    os.environ.update(worker_environment(args))  # each worker builds its own app from them
    if args.metrics:
        shared_metrics_directory()
    log.info("openai-files: %d worker processes share the port", args.workers)
    return run_server(args, None)


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser(serve_flags=argv[:1] == ["serve"]).parse_args(argv)
    if args.command == "serve":
        return serve(args)
    if args.command == "storage":
        return run_rewrap(args)
    if args.command == "admin":
        return run_admin_command(args)
    # The client (and httpx) only for the client commands.
    from ._client_commands import run_client_command

    return run_client_command(args)
