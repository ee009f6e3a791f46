"""``openai-files serve`` checks its backends before it accepts traffic.

Before the server binds its port, a service over the same storage and metadata URLs is opened
in a short-lived event loop of its own and probed (`FilesService.check` with ``write=True``):
the metadata store reads a usage row (a SQL store creates or checks its tables, so a database
that does not exist, a refused port or a wrong password shows here) and storage takes and
removes a small object (a missing bucket or a read-only directory shows here). If either fails,
the driver's own message is logged, credentials masked, and ``serve`` exits with status 1: a
replica that cannot serve never reports ``Application startup complete``.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
from pathlib import Path

from ..backends import open_service
from ._serve_options import server_settings

__all__ = ["STARTUP_CHECK_TIMEOUT", "backends_answer"]

log = logging.getLogger("openai_files")

STARTUP_CHECK_TIMEOUT = 15.0
"""Seconds each backend has to answer its start-up check."""


def backends_answer(args: argparse.Namespace) -> bool:
    """Whether the storage and metadata store that ``args`` name answer; when not, each
    failure is logged with its cause."""
    storage, metadata, _ = server_settings(args)
    if args.storage is None or args.metadata is None:  # something is kept in the data dir
        Path(args.data_dir).mkdir(parents=True, exist_ok=True)
    try:
        service = open_service(storage, metadata, table_prefix=args.table_prefix)
    except (ValueError, ImportError) as exc:
        log.error("openai-files serve: cannot open the backends: %s", exc)
        return False

    async def check() -> bool:
        async with service:
            readiness = await service.check(within=STARTUP_CHECK_TIMEOUT, write=True)
        for name, outcome in (
            ("metadata store", readiness.metadata),
            ("storage", readiness.storage),
        ):
            if not outcome.ok:
                log.error(
                    "openai-files serve: the %s failed its start-up check: %s", name, outcome.error
                )
        return readiness.ready

    return asyncio.run(check())
