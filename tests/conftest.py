"""Shared fixtures: free ports, real servers on loopback, and services that may be absent."""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import uvicorn
from starlette.types import ASGIApp

from openai_files import FilesService, LocalStorage, MemoryMetadataStore, MemoryStorage
from openai_files.metadata.sql import SQLMetadataStore

IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}


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
        reason = f"{name} is not reachable on {host}:{port} ({exc})"
    if IN_CI:
        pytest.fail(f"{reason}; CI=true requires every service")
    pytest.skip(reason)


class ServerThread:
    """uvicorn serving an ASGI app on a free loopback port, in a background thread."""

    def __init__(self, app: ASGIApp) -> None:
        self.port = free_port()
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning")
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


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite+aiosqlite:///{tmp_path / 'files.db'}"


@pytest.fixture
async def memory_service() -> AsyncIterator[FilesService]:
    async with FilesService(MemoryStorage(), MemoryMetadataStore()) as service:
        yield service


@pytest.fixture
async def local_service(tmp_path: Path, sqlite_url: str) -> AsyncIterator[FilesService]:
    storage = LocalStorage(tmp_path / "blobs")
    async with FilesService(storage, SQLMetadataStore(sqlite_url)) as service:
        yield service


def stored_files(root: Path) -> list[str]:
    """Every file under ``root``, hidden temporary files included, relative and sorted."""
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())
