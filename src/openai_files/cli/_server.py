"""The HTTP server of ``openai-files serve``: uvicorn, in one process or in ``--workers N``.

After SIGTERM (or SIGINT) the server accepts no new connection, and the requests in flight get
``--graceful-timeout`` seconds to finish; then they are cancelled, and each removes what it
wrote, as for a client that disconnected.

uvicorn runs on uvloop with httptools by default (``--loop auto``, ``--http auto`` pick them,
as they are installed with openai-files; asyncio and h11 where they are missing), with the
header deadline of `with_header_timeout` on whichever HTTP protocol it runs.

With several workers, the parent binds the port and starts the workers, each a process that
builds its own app (`worker_app`) and accepts connections on the shared socket; the parent
restarts a worker that dies while serving, stops every worker on SIGTERM or SIGINT (each
finishes the requests in progress), and stops them all when one cannot start.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

import uvicorn
from uvicorn.supervisors.multiprocess import Multiprocess

from ._header_timeout import with_header_timeout
from ._serve_app import FACTORY, STARTUP_FAILURE, ASGIApp

__all__ = ["ServeConfig", "run_server"]


class ServeConfig(uvicorn.Config):
    """uvicorn's settings, with bounds on request heads (`with_header_timeout`): a deadline of
    ``header_timeout`` seconds unless it is 0, and a size.

    The deadline is applied when the settings are loaded, in the process that serves: with
    several workers the settings travel to each worker, which cannot receive a class made at
    run time.
    """

    def __init__(self, app: Any, *, header_timeout: float, **options: Any) -> None:
        super().__init__(app, **options)
        self.header_timeout = header_timeout

    def load(self) -> None:
        super().load()
        # uvicorn's protocol class, resolved from ``http`` by now; the head's size is bounded
        # even without a deadline.
        protocol = self.http_protocol_class
        self.http_protocol_class = with_header_timeout(protocol, self.header_timeout)


def json_logging(args: argparse.Namespace) -> dict[str, Any]:
    """With ``--log-format json``: uvicorn's records go to the JSON handler ``serve`` set up
    (no logging configuration of its own) and its text access lines are off (the app writes
    its own, in JSON)."""
    if getattr(args, "log_format", "text") != "json":
        return {}
    return {"log_config": None, "access_log": False}


def run_server(args: argparse.Namespace, app: ASGIApp | None) -> int:
    """Serve ``app`` in this process, or with ``app`` None, ``args.workers`` processes that
    each build their own (`worker_app`, whose settings must be in the environment). The exit
    status: 0 after a shutdown, `STARTUP_FAILURE` when the server (or a worker) could not start.
    """
    config = ServeConfig(
        FACTORY if app is None else app,
        factory=app is None,
        workers=args.workers,
        host=args.host,
        port=args.port,
        log_level=args.log_level.lower(),
        http=args.http,
        loop=args.loop,
        header_timeout=args.header_timeout,
        timeout_graceful_shutdown=args.graceful_timeout,
        **json_logging(args),
    )
    if app is not None:
        server = uvicorn.Server(config)
        server.run()
        return 0 if server.started else STARTUP_FAILURE
    supervisor = Multiprocess(config, sockets=[config.bind_socket()])
    supervisor.run()
    failed = [p.pid for p in supervisor.processes if p.exitcode == STARTUP_FAILURE]
    if failed:
        print(
            f"openai-files serve: error: worker {failed[0]} could not start (its error is "
            "above), so every worker was stopped",
            file=sys.stderr,
        )
        return STARTUP_FAILURE
    return 0
