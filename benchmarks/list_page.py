"""List benchmark: the cost of one page of ``GET /v1/files?limit=100`` as the table grows.

Two databases are filled, one with ``--small`` files (default 1,000) and one with ``--large``
files (default 100,000), all of one owner; a server runs on each. Measured, side by side in one
run, through uvicorn on loopback: the median time of the first page of 100 (``curl`` on a
kept-alive connection, ``--rounds`` rounds of ``--requests`` requests to each server,
alternating).

``--database sqlite`` (the default) gives each server a SQLite file of its own;
``--database postgresql`` gives each its own tables, under a unique table prefix, in the
PostgreSQL database of ``--postgres-url``, analysed after the bulk load as any bulk load should
be, and dropped at the end.

Target: the page at the large size takes <= 1.5x the time of the page at the small size
(keyset pagination over the ``(owner, created_us, id)`` index, so a page costs the same).

The records are written with one multi-row INSERT per batch into the table that
`SQLMetadataStore.create_schema` made, through the store's own engine: inserting 100,000
records one by one through `SQLMetadataStore.insert` (one transaction each) alone would take
minutes.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import secrets
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import ExitStack
from pathlib import Path

from harness.clients import curl, curl_many, expect, read_json
from harness.measure import rotated
from harness.report import Figure, Report, Target, median
from harness.results import add_results_option, run_script
from harness.servers import Server, add_allocator_option, allocator, allocator_name, ours_server
from harness.stores import add_postgres_option, postgres_missing, postgres_tables
from sqlalchemy import MetaData, Table, insert, text
from sqlalchemy.engine import Connection

from openai_files import FileRecord, SQLMetadataStore
from openai_files.ids import new_file_id
from openai_files.metadata.base import DEFAULT_TABLE_PREFIX

MAX_LARGE_VS_SMALL = 1.5
PAGE = 100
OWNER = "default"  # the owner of every request to a server without API keys
PURPOSES = ("batch", "fine-tune", "assistants", "user_data")
BATCH = 5_000
SECOND_US = 1_000_000


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.partition("\n")[0])
    parser.add_argument("--small", type=int, default=1_000, help="files (1,000)")
    parser.add_argument("--large", type=int, default=100_000, help="files (100,000)")
    parser.add_argument("--rounds", type=int, default=10, help="alternations (10)")
    parser.add_argument("--requests", type=int, default=50, help="requests per round (50)")
    parser.add_argument(
        "--database", choices=("sqlite", "postgresql"), default="sqlite", help="(sqlite)"
    )
    add_postgres_option(parser)
    add_allocator_option(parser)
    parser.add_argument("--quick", action="store_true", help="a smoke run: 200 vs 2,000 files")
    add_results_option(parser)
    return parser


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    options = build_parser().parse_args(argv)
    if options.quick:
        options.small, options.large, options.rounds, options.requests = 200, 2_000, 2, 20
    return options


def unavailable(options: argparse.Namespace) -> str | None:
    """Why this benchmark cannot run here, or None."""
    if options.database == "postgresql":
        return postgres_missing(options.postgres_url)
    return None


def run(options: argparse.Namespace) -> Report:
    on_postgres = options.database == "postgresql"
    report = Report(
        "list (postgresql)" if on_postgres else "list",
        {
            "small": options.small,
            "large": options.large,
            "page": PAGE,
            "requests": options.rounds * options.requests,
            "database": options.database,
            "malloc": allocator_name(options),
        },
    )
    sizes = {"small": options.small, "large": options.large}
    with tempfile.TemporaryDirectory(prefix="openai-files-bench-") as temp, ExitStack() as stack:
        servers = {
            label: stack.enter_context(_server_with(stack, count, Path(temp) / label, options))
            for label, count in sizes.items()
        }
        times = _page_times(servers, options.rounds, options.requests)
    for label, samples in times.items():
        figure = f"{label} ({sizes[label]:,} files) page"
        report.figures.append(Figure(figure, median(samples), "ms", samples))
    ratio = median(times["large"]) / median(times["small"])
    name = "list page large / small" + (" (postgresql)" if on_postgres else "")
    report.targets.append(Target(name, ratio, MAX_LARGE_VS_SMALL, "x", at_least=False))
    return report


def _server_with(
    stack: ExitStack, count: int, data_dir: Path, options: argparse.Namespace
) -> Server:
    """A server (not yet started) on a new database of ``count`` files: a SQLite file in
    ``data_dir``, or tables of their own in PostgreSQL, dropped when ``stack`` closes."""
    data_dir.mkdir()
    malloc = allocator(options)
    if options.database == "sqlite":
        asyncio.run(populate(f"sqlite+aiosqlite:///{data_dir / 'files.db'}", count))
        return ours_server(data_dir, allocator=malloc)
    url = options.postgres_url
    prefix = stack.enter_context(postgres_tables(url, data_dir.name))
    asyncio.run(populate(url, count, table_prefix=prefix))
    return ours_server(data_dir, allocator=malloc, metadata=url, table_prefix=prefix)


async def populate(url: str, count: int, *, table_prefix: str = DEFAULT_TABLE_PREFIX) -> None:
    """Fill a new database (or new tables) with ``count`` files of `OWNER`, created one second
    apart; then have PostgreSQL gather the table's statistics, as after any bulk load."""
    store = SQLMetadataStore(url, table_prefix=table_prefix)
    try:
        await store.create_schema()
        name = f"{store.table_prefix}files"
        async with store.engine.begin() as connection:
            table = await connection.run_sync(_reflect, name)
            for batch in _batches(_records(count), BATCH):
                rows = [dataclasses.asdict(record) for record in batch]
                await connection.execute(insert(table), rows)
        if store.engine.dialect.name == "postgresql":
            async with store.engine.begin() as connection:
                await connection.execute(text(f"ANALYZE {name}"))
    finally:
        await store.aclose()


def _reflect(connection: Connection, name: str) -> Table:
    return Table(name, MetaData(), autoload_with=connection)


def _records(count: int) -> Iterator[FileRecord]:
    """Active files of several purposes, the newest created now; batch files expire in 30 days."""
    newest = int(time.time()) * SECOND_US
    for index in range(count):
        created_us = newest - index * SECOND_US
        purpose = PURPOSES[index % len(PURPOSES)]
        expires_at = created_us // SECOND_US + 30 * 86_400 if purpose == "batch" else None
        yield FileRecord(
            id=new_file_id(created_us),
            owner=OWNER,
            purpose=purpose,
            filename=f"input-{index}.jsonl",
            bytes=1024 + index,
            created_us=created_us,
            expires_at=expires_at,
            status="processed",
            status_details=None,
            storage_key=secrets.token_hex(16),
            sha256=secrets.token_hex(32),
            media_type="application/jsonl",
            state="active",
        )


def _batches(records: Iterator[FileRecord], size: int) -> Iterator[list[FileRecord]]:
    batch: list[FileRecord] = []
    for record in records:
        batch.append(record)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def _page_url(server: Server) -> str:
    return f"{server.url}/v1/files?limit={PAGE}"


def _check_first_page(server: Server) -> None:
    """The first page is full and announces more: the server reads the database filled."""
    response = server.log.with_suffix(".page.json")
    expect(curl(_page_url(server), output=response))
    page = read_json(response)
    if len(page["data"]) != PAGE or not page["has_more"]:
        raise RuntimeError(f"unexpected first page from {server.url}: {len(page['data'])} files")


def _page_times(servers: dict[str, Server], rounds: int, requests: int) -> dict[str, list[float]]:
    """Milliseconds per page, by server; one untimed round first warms caches and connections."""
    for server in servers.values():
        _check_first_page(server)
    times: dict[str, list[float]] = {label: [] for label in servers}
    for turn in range(-1, rounds):
        for label in rotated(list(servers), turn):
            transfers = curl_many([_page_url(servers[label])] * requests)
            if turn >= 0:
                times[label] += [expect(transfer).seconds * 1000 for transfer in transfers]
    return times


def main(argv: Sequence[str] | None = None) -> int:
    return run_script("list_page", parse_args(argv), unavailable, run)


if __name__ == "__main__":
    sys.exit(main())
