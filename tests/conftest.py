"""Shared fixtures: free ports, real servers on loopback, and services that may be absent."""

from __future__ import annotations

import importlib.util
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, NoReturn

import anyio
import httpx
import pytest
import uvicorn
from starlette.types import ASGIApp

from openai_files import (
    FilesService,
    LocalStorage,
    MemoryMetadataStore,
    MemoryStorage,
    MetadataStore,
    SQLMetadataStore,
    Storage,
)

if TYPE_CHECKING:
    from .clusters import Cluster
    from .s3_servers import S3Server

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


@pytest.fixture
def cluster(tmp_path: Path, moto: S3Server) -> Iterator[Cluster]:
    """A bucket in moto and a table prefix in PostgreSQL for replicas to share, both removed
    afterwards."""
    from .clusters import Cluster
    from .databases import POSTGRES_URL, drop_tables, unique_prefix
    from .s3_servers import ACCESS_KEY, REGION, SECRET_KEY

    require_service("PostgreSQL", "127.0.0.1", 5432)
    bucket, prefix = moto.create_bucket(), unique_prefix()
    storage_url = f"s3://{bucket}/shared/?endpoint={moto.endpoint}&region={REGION}&allow_http=true"
    env = {"AWS_ACCESS_KEY_ID": ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": SECRET_KEY}
    yield Cluster(tmp_path, storage_url, prefix, env)
    anyio.run(drop_tables, POSTGRES_URL, prefix)
    moto.remove_bucket(bucket)


@pytest.fixture(scope="session")
def moto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    """moto's S3 server on a free loopback port, for the whole session (per worker)."""
    from .s3_servers import s3_server

    with s3_server("moto", tmp_path_factory.mktemp("moto")) as server:
        yield server


@pytest.fixture(scope="session")
def rclone(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    """``rclone serve s3`` on a free loopback port, for the whole session (per worker)."""
    from .s3_servers import s3_server

    with s3_server("rclone", tmp_path_factory.mktemp("rclone")) as server:
        yield server


@pytest.fixture(params=["local+sqlite", "s3+postgresql"])
def backends(
    request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[tuple[Storage, MetadataStore]]:
    """A fresh (storage, metadata) pair: the embedded default, then the replicated shape."""
    if request.param == "local+sqlite":
        yield (
            LocalStorage(tmp_path / "blobs"),
            SQLMetadataStore(f"sqlite+aiosqlite:///{tmp_path / 'files.db'}"),
        )
        return
    from .databases import POSTGRES_URL, drop_tables, unique_prefix

    require_service("PostgreSQL", "127.0.0.1", 5432)
    server: S3Server = request.getfixturevalue("moto")
    bucket, prefix = server.create_bucket(), unique_prefix()
    yield (
        server.storage(bucket, prefix="files/"),
        SQLMetadataStore(POSTGRES_URL, table_prefix=prefix),
    )
    anyio.run(drop_tables, POSTGRES_URL, prefix)
    server.remove_bucket(bucket)


def load_module(path: Path) -> ModuleType:
    """The Python file at ``path`` (an example), imported under a name that shadows nothing."""
    spec = importlib.util.spec_from_file_location(f"example_{path.parent.name}_{path.stem}", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
