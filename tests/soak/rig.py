"""The benchmarks' harness, which the soak shares: servers on loopback ports (moto, processes
with pinned malloc settings), PostgreSQL tables, what is measured of a process, and how targets
are printed. It lives in ``benchmarks/harness/``; this module puts it on the import path and
names what the soak uses of it."""

from __future__ import annotations

import sys
from pathlib import Path

SOAK_DIR = Path(__file__).resolve().parent
"""This folder: the soak's scripts, and ``results/`` where its reports and logs go."""
RESULTS_DIR = SOAK_DIR / "results"
sys.path.insert(0, str(SOAK_DIR.parents[1] / "benchmarks"))

from harness.measure import open_descriptors, peak_rss_bytes, rss_bytes  # noqa: E402
from harness.report import Target, machine, print_table, target_rows  # noqa: E402
from harness.servers import (  # noqa: E402
    Server,
    add_allocator_option,
    allocator,
    allocator_name,
    moto_server,
    s3_server_missing,
    s3_storage_url,
)
from harness.stores import (  # noqa: E402
    S3_CREDENTIALS,
    S3_REGION,
    add_postgres_option,
    create_bucket,
    postgres_missing,
    postgres_tables,
    s3_client,
)

__all__ = [
    "RESULTS_DIR",
    "S3_CREDENTIALS",
    "S3_REGION",
    "SOAK_DIR",
    "Server",
    "Target",
    "add_allocator_option",
    "add_postgres_option",
    "allocator",
    "allocator_name",
    "create_bucket",
    "machine",
    "moto_server",
    "open_descriptors",
    "peak_rss_bytes",
    "postgres_missing",
    "postgres_tables",
    "print_table",
    "rss_bytes",
    "s3_client",
    "s3_server_missing",
    "s3_storage_url",
    "target_rows",
]
