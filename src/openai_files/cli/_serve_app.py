"""The ASGI app that ``openai-files serve`` runs, built from its parsed flags.

One process builds it with `build_app`. With ``--workers N`` each worker process builds its
own from the flags the parent parsed: the parent puts them in the environment variable
`SETTINGS_VARIABLE` (`worker_environment`), and every worker calls `worker_app`, the factory
its server imports by name, which reads them back. A worker that cannot build its app exits
with `STARTUP_FAILURE`, so the parent stops instead of starting it again and again.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from sqlalchemy.engine import make_url

from .._instrumented import instrumented
from ..backends import open_metadata, open_storage
from ..http import FilesMetrics, FormLimits
from ..http.app import create_app
from ..http.auth import Authenticator, api_key_auth, open_auth
from ..service import FilesService
from ._collector import settled_after
from ._log_format import configure_logging
from ._operations import admin_key_from
from ._serve_options import mask, owner_of_key, policy_from_args, server_settings
from ._storage_options import describe_storage, inline_max_for, wrap_storage

__all__ = [
    "FACTORY",
    "SETTINGS_VARIABLE",
    "STARTUP_FAILURE",
    "ASGIApp",
    "announce",
    "build_app",
    "configure_logging",
    "worker_app",
    "worker_environment",
]

log = logging.getLogger("openai_files")

ASGIApp = Callable[[Any, Any, Any], Awaitable[None]]
"""An ASGI application: what `build_app` returns (the HTTP edge's Starlette app)."""

SETTINGS_VARIABLE = "OPENAI_FILES_SERVE_SETTINGS"
"""The parent's parsed ``serve`` flags, as a JSON object, in each worker's environment."""
FACTORY = f"{__name__}:worker_app"
"""The import string of `worker_app`."""
STARTUP_FAILURE = 3
"""The exit status of a worker that could not start: its server then stops them all."""


def announce(args: argparse.Namespace) -> None:
    """Log what the server built from ``args`` will serve: its keys (how many, never which;
    the owner of each key given without one, with the key masked) or a warning that it is
    open, and its storage and metadata (without passwords; with the largest file whose bytes
    the metadata store keeps)."""
    storage, metadata, keys = server_settings(args)
    if keys:
        owners = len(set(keys.values()))
        log.info("openai-files: %d API key(s) configured for %d owner(s)", len(keys), owners)
        for key, owner in keys.items():
            if owner == owner_of_key(key):
                log.info(
                    "openai-files: the key %s, given without an owner, is the owner %s "
                    "(KEY=OWNER names it)",
                    mask(key),
                    owner,
                )
    else:
        log.warning(
            "openai-files: no API key configured: the server is OPEN and every caller is "
            "the owner 'default'. Pass --api-key to require keys."
        )
    if not metadata.startswith("memory:"):
        metadata = make_url(metadata).render_as_string(hide_password=True)
    wrapped = describe_storage(args)
    inline = inline_max_for(args, storage)
    log.info(
        "openai-files: storage %s%s, metadata %s%s",
        storage,
        f" ({wrapped})" * bool(wrapped),
        metadata,
        f" (keeping the bytes of files of up to {inline} bytes)" * bool(inline),
    )


def build_app(args: argparse.Namespace) -> ASGIApp:
    """The app that ``args`` (the parsed ``serve`` flags) describe, which closes its service
    when it shuts down and sets the process's garbage collector for serving once it has
    started (`settled_after`); `ValueError` for settings that cannot be served (see
    `server_settings`, `policy_from_args`)."""
    storage, metadata, keys = server_settings(args)
    policy = policy_from_args(args)
    if args.storage is None or args.metadata is None:  # something is kept in the data dir
        Path(args.data_dir).mkdir(parents=True, exist_ok=True)
    metrics = getattr(args, "metrics", True)
    observe_tier = FilesMetrics.of().hot_tier if metrics else None
    service = FilesService(
        wrap_storage(open_storage(storage), args, observe_tier),
        open_metadata(metadata, table_prefix=args.table_prefix),
        policy=policy,
        inline_max=inline_max_for(args, storage),
    )
    if metrics:
        service = measured(service)
    auth: Authenticator = api_key_auth(keys) if keys else open_auth()
    app = create_app(
        service,
        auth=auth,
        presigned_downloads=args.presigned_downloads or None,
        sweep_interval=args.sweep_interval or None,
        sweep_stale_after=args.stale_after,
        close_service=True,
        openapi=True,
        uploads_api=args.uploads_api,
        file_too_large_status=args.file_too_large_status,
        form_limits=FormLimits(body_timeout=args.body_timeout or None),
        probes=True,
        metrics=metrics,
        admin_key=admin_key_from(args, os.environ),
    )
    # This process serves: its garbage collector is set for serving once the app has started.
    app.router.lifespan_context = settled_after(app.router.lifespan_context)
    return app


def measured(service: FilesService) -> FilesService:
    """``service`` over the same backends, each operation of which the default registry's
    `FilesMetrics` times (``openai_files_backend_operation_duration_seconds``)."""
    observe = FilesMetrics.of().backend_operation
    return FilesService(
        instrumented(service.storage, observe, kind="storage"),
        instrumented(service.metadata, observe, kind="metadata"),
        policy=service.policy,
        inline_max=service.inline_max,
    )


def worker_environment(args: argparse.Namespace) -> dict[str, str]:
    """What a worker needs in its environment to build the app of ``args`` (`worker_app`)."""
    return {SETTINGS_VARIABLE: json.dumps(vars(args))}


def worker_app() -> ASGIApp:
    """The app of one worker of ``serve --workers N``, from the flags its parent parsed.

    Exits with `STARTUP_FAILURE`, saying why, when the settings are missing or cannot be
    served (a keys file removed since the parent read it, say).
    """
    try:
        settings = json.loads(os.environ[SETTINGS_VARIABLE])
    except (KeyError, ValueError):
        print(
            f"openai-files serve: error: {SETTINGS_VARIABLE} holds no settings: a worker is "
            "started by 'openai-files serve --workers N', not on its own",
            file=sys.stderr,
        )
        sys.exit(STARTUP_FAILURE)
    args = argparse.Namespace(**settings)
    configure_logging(args.log_level, worker=True, log_format=getattr(args, "log_format", "text"))
    try:
        return build_app(args)
    except ValueError as exc:
        print(f"openai-files serve: error: a worker cannot start: {exc}", file=sys.stderr)
    except Exception:
        log.exception("openai-files serve: a worker cannot start")
    sys.exit(STARTUP_FAILURE)
