"""Shared fixtures: an anyio backend, services over memory or local disk, the S3 servers, the
storage and metadata pairs of both deployment shapes. Helpers to import are in ``support.py``."""

from __future__ import annotations

from collections.abc import AsyncIterator, Generator, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import anyio
import pytest

from openai_files import (
    FilesService,
    LocalStorage,
    MemoryMetadataStore,
    MemoryStorage,
    MetadataStore,
    SQLMetadataStore,
    Storage,
)

from .support import IN_CI, expected_skip

if TYPE_CHECKING:
    from .clusters import Cluster
    from .s3_servers import S3Server


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """Under CI=true a skip is a failure, whatever skipped (a missing service, a missing tool,
    a ``skipif``), unless its reason declares it expected (`expected_skip`)."""
    report = yield
    if IN_CI and report.skipped and not hasattr(report, "wasxfail"):
        longrepr = report.longrepr
        reason = longrepr[2] if isinstance(longrepr, tuple) else str(longrepr)
        reason = reason.removeprefix("Skipped: ")
        if not expected_skip(reason):
            report.outcome = "failed"
            report.longrepr = (
                f"skipped under CI=true: {reason}\nCI=true requires every service and tool; "
                "a skip that is expected ends its reason with '(optional)'"
            )
    return report


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


@pytest.fixture
def cluster(tmp_path: Path, moto: S3Server) -> Iterator[Cluster]:
    """A bucket in moto and a table prefix in PostgreSQL for replicas to share, both removed
    afterwards."""
    from .clusters import Cluster
    from .databases import POSTGRES_URL, drop_tables, require_database, unique_prefix
    from .s3_servers import ACCESS_KEY, REGION, SECRET_KEY

    require_database("postgresql")
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
    from .databases import POSTGRES_URL, drop_tables, require_database, unique_prefix

    require_database("postgresql")
    server: S3Server = request.getfixturevalue("moto")
    bucket, prefix = server.create_bucket(), unique_prefix()
    yield (
        server.storage(bucket, prefix="files/"),
        SQLMetadataStore(POSTGRES_URL, table_prefix=prefix),
    )
    anyio.run(drop_tables, POSTGRES_URL, prefix)
    server.remove_bucket(bucket)
