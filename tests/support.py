"""Helpers every test may import: free ports, real servers on loopback (uvicorn in a thread,
``openai-files serve`` in a process), services that may be absent, and small file utilities.

The fixtures built on them are in ``conftest.py``."""

from __future__ import annotations

import importlib.util
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType
from typing import NoReturn

import httpx
import pytest
import uvicorn
from starlette.types import ASGIApp

from openai_files.cli._server import ServeConfig

IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}

BATCH_LINE = (
    b'{"custom_id": "request-1", "method": "POST", "url": "/v1/chat/completions", "body": {}}\n'
)
"""One valid batch request: a batch file must be valid JSONL under the default policy."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def require_service(name: str, host: str, port: int) -> None:
    """Skip when a service does not answer on ``host:port``; under CI=true, fail instead."""
    try:
        with socket.create_connection((host, port), timeout=2):
            return
    except OSError as exc:
        service_missing(f"{name} is not reachable on {host}:{port} ({exc})")


def service_missing(reason: str) -> NoReturn:
    """Skip the test for a missing service with ``reason``; under CI=true, fail it instead."""
    if IN_CI:
        pytest.fail(f"{reason}; CI=true requires every service")
    pytest.skip(reason)


def requires_tool(name: str, why: str) -> pytest.MarkDecorator:
    """Skip the test when the program ``name`` is not on ``PATH``; under CI=true the skip is a
    failure that names it (``conftest.py``)."""
    return pytest.mark.skipif(
        shutil.which(name) is None, reason=f"{name} is not on PATH (needed {why})"
    )


def expected_skip(reason: str) -> bool:
    """Whether a skip is declared as expected, also under CI=true: its reason ends with
    ``(optional)``, as the conformance suites say of a capability a backend may lack."""
    return reason.rstrip().endswith("(optional)")


class ServerThread:
    """uvicorn serving an ASGI app on a free loopback port, in a background thread, on the
    stack ``openai-files serve`` runs (its bounds on request heads; no header deadline)."""

    def __init__(self, app: ASGIApp) -> None:
        self.port = free_port()
        config = ServeConfig(
            app, host="127.0.0.1", port=self.port, log_level="warning", header_timeout=0
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> ServerThread:
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("the test server did not start")
            time.sleep(0.01)
        return self

    def __exit__(self, *_: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=20)


@contextmanager
def serve(app: ASGIApp) -> Iterator[ServerThread]:
    with ServerThread(app) as server:
        yield server


class ServerProcess:
    """An ``openai-files serve`` process on a free port; its output goes to a log file."""

    def __init__(self, workdir: Path, *args: str, env: dict[str, str] | None = None) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = workdir / f"serve-{self.port}.log"
        command = [sys.executable, "-m", "openai_files.cli", "serve", "--port", str(self.port)]
        with self.log.open("w") as output:
            self.process = subprocess.Popen(
                [*command, *args],
                cwd=workdir,
                env={**os.environ, **(env or {})},
                stdout=output,
                stderr=subprocess.STDOUT,
            )

    def wait_until_serving(self) -> None:
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.get(self.url + "/v1/files", timeout=1)
                return
            except httpx.TransportError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"server did not start: {self.output()}") from None
                time.sleep(0.1)

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


@contextmanager
def server_process(
    workdir: Path, *args: str, env: dict[str, str] | None = None
) -> Iterator[ServerProcess]:
    """Run ``openai-files serve`` with ``args`` until the block ends."""
    server = ServerProcess(workdir, *args, env=env)
    try:
        server.wait_until_serving()
        yield server
    finally:
        server.stop()


def stored_files(root: Path) -> list[str]:
    """Every file under ``root``, hidden temporary files included, relative and sorted."""
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())


def load_module(path: Path) -> ModuleType:
    """The Python file at ``path`` (an example), imported under a name that shadows nothing."""
    spec = importlib.util.spec_from_file_location(f"example_{path.parent.name}_{path.stem}", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def embedded_app(root: Path, keys: dict[str, str]) -> ASGIApp:
    """The files app on local disk and SQLite under ``root``, for ``keys``; it closes its
    service when its server stops."""
    from openai_files import FilesService, LocalStorage, SQLMetadataStore, api_key_auth, create_app

    service = FilesService(
        LocalStorage(root / "blobs"), SQLMetadataStore(f"sqlite+aiosqlite:///{root / 'files.db'}")
    )
    return create_app(service, auth=api_key_auth(keys), close_service=True)
