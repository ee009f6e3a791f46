"""What the servers store in, seen from the side: an S3 server's objects and PostgreSQL tables.

PostgreSQL must already run (`POSTGRES_URL`); each benchmark's tables get a unique prefix and
are dropped afterwards.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import os
import secrets
import socket
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

S3_REGION = "us-east-1"
S3_CREDENTIALS: Mapping[str, str] = {
    "AWS_ACCESS_KEY_ID": "openai-files-benchmark",
    "AWS_SECRET_ACCESS_KEY": "openai-files-benchmark",
    "AWS_REGION": S3_REGION,
}
"""What ours and the obstore baseline read from the environment; moto accepts any keys."""
POSTGRES_URL = os.environ.get(
    "OPENAI_FILES_BENCH_POSTGRES", "postgresql+asyncpg://postgres@127.0.0.1:5432/postgres"
)
"""The PostgreSQL database the benchmarks use (``OPENAI_FILES_BENCH_POSTGRES`` overrides it)."""


def add_postgres_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--postgres-url",
        default=POSTGRES_URL,
        help="SQLAlchemy URL of the PostgreSQL database to use (OPENAI_FILES_BENCH_POSTGRES)",
    )


def postgres_missing(url: str) -> str | None:
    """Why the PostgreSQL at ``url`` cannot be used, or None when it answers."""
    from sqlalchemy.engine import make_url

    if importlib.util.find_spec("asyncpg") is None:
        return "asyncpg is not installed (pip install -e '.[postgres]')"
    parsed = make_url(url)
    host, port = parsed.host or "127.0.0.1", parsed.port or 5432
    try:
        with socket.create_connection((host, port), timeout=2):
            return None
    except OSError as exc:
        return f"PostgreSQL is not reachable on {host}:{port} ({exc.strerror or exc})"


def s3_client(endpoint: str) -> Any:
    """A boto3 S3 client of the server at ``endpoint``, with the benchmarks' credentials."""
    import boto3  # only the S3 benchmarks need it

    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name=S3_REGION,
        aws_access_key_id=S3_CREDENTIALS["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=S3_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
    )


def create_bucket(endpoint: str, bucket: str) -> None:
    s3_client(endpoint).create_bucket(Bucket=bucket)


def s3_objects(endpoint: str, bucket: str, prefix: str) -> dict[str, int]:
    """The size of every object under ``prefix``, by name (the first 1,000 objects)."""
    listing = s3_client(endpoint).list_objects_v2(Bucket=bucket, Prefix=prefix)
    return {item["Key"]: item["Size"] for item in listing.get("Contents", [])}


@contextmanager
def postgres_tables(url: str, label: str) -> Iterator[str]:
    """A table prefix no one else uses, for the block; its tables are dropped afterwards."""
    prefix = f"bench_{secrets.token_hex(4)}_{label}_"
    try:
        yield prefix
    finally:
        asyncio.run(_drop_tables(url, prefix))


async def _drop_tables(url: str, prefix: str) -> None:
    from openai_files import SQLMetadataStore

    store = SQLMetadataStore(url, table_prefix=prefix)
    try:
        await store.drop_schema()
    finally:
        await store.aclose()
