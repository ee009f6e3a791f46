"""Durability benchmark: what flushing costs small uploads, local disk + SQLite.

Five ``openai-files serve`` processes, each with its own data directory: durable (the default:
a small file's bytes written with its record, SQLite with ``synchronous=FULL``),
``--no-fsync`` (no flush at all), and with every file's bytes on disk (``--inline-max 0``, the
default of earlier releases) durable (every blob and its directories flushed with ``fsync``
before the record commits) and with each flush alone (``file:...?fsync=false`` keeps SQLite's;
``?synchronous=normal`` keeps the blobs'). Measured side by side in one run:
``--requests`` uploads of a ``--size`` byte file (1 KB) by ``--clients`` concurrent clients
(8), on kept-alive connections, to each server in turn (the order rotating), ``--rounds``
rounds; reported: the median uploads per second of each server, its ratio to the durable
default, and the server's CPU seconds per 1,000 uploads.

No target: the figures document the price of the default and what ``--no-fsync`` buys
(docs/reliability.md).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import httpx
from harness.measure import ProcessCounters, rotated
from harness.report import Figure, Report, median
from harness.results import add_results_option, run_and_finish
from harness.servers import Server, add_allocator_option, allocator, allocator_name, ours_server

ON_DISK = ("--inline-max", "0")
CONTENDERS: dict[str, tuple[str | None, str | None, tuple[str, ...]]] = {
    "durable (default)": (None, None, ()),
    "--no-fsync": ("?fsync=false", "?synchronous=normal", ()),
    "files on disk, durable": (None, None, ON_DISK),
    "files on disk, blobs fsync only": (None, "?synchronous=normal", ON_DISK),
    "files on disk, SQLite FULL only": ("?fsync=false", None, ON_DISK),
}
"""Each server's name, the options added to its storage and SQLite URLs, and its flags."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=1024, help="bytes per file (1024)")
    parser.add_argument("--clients", type=int, default=8, help="concurrent clients (8)")
    parser.add_argument("--requests", type=int, default=400, help="uploads per round (400)")
    parser.add_argument("--rounds", type=int, default=5, help="rounds (5)")
    parser.add_argument("--two", action="store_true", help="only durable and --no-fsync")
    parser.add_argument("--quick", action="store_true", help="a smoke run: 20 uploads, 1 round")
    add_allocator_option(parser)
    add_results_option(parser)
    return parser


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    options = build_parser().parse_args(argv)
    options.warm_up = 50
    if options.quick:
        options.requests, options.rounds, options.warm_up = 20, 1, 5
    return options


def run(options: argparse.Namespace) -> Report:
    names = list(CONTENDERS)[:2] if options.two else list(CONTENDERS)
    rates: dict[str, list[float]] = {name: [] for name in names}
    cpu: dict[str, list[float]] = {name: [] for name in names}
    with tempfile.TemporaryDirectory(prefix="durability-", dir=Path.cwd()) as scratch:
        servers = {name: start(Path(scratch), n, name, options) for n, name in enumerate(names)}
        try:
            for server in servers.values():  # warm up: tables, shard directories, imports
                asyncio.run(upload_many(server.url, options.warm_up, options.clients, options.size))
            for turn in range(options.rounds):
                for name in rotated(names, turn):
                    server = servers[name]
                    before = ProcessCounters.of(server.pid)
                    elapsed = asyncio.run(
                        upload_many(server.url, options.requests, options.clients, options.size)
                    )
                    spent = (ProcessCounters.of(server.pid) - before).cpu_seconds
                    rates[name].append(options.requests / elapsed)
                    cpu[name].append(spent * 1000 / options.requests)
        finally:
            for server in servers.values():
                server.__exit__(None, None, None)
    return report(rates, cpu, options)


def main(argv: Sequence[str] | None = None) -> int:
    return run_and_finish(run, parse_args(argv))


def start(scratch: Path, number: int, name: str, options: argparse.Namespace) -> Server:
    data_dir = scratch / f"server{number}"
    data_dir.mkdir()
    storage_option, metadata_option, flags = CONTENDERS[name]
    storage = (data_dir / "files").as_uri() + storage_option if storage_option else None
    metadata = (
        f"sqlite+aiosqlite:///{data_dir / 'files.db'}{metadata_option}" if metadata_option else None
    )
    server = ours_server(
        data_dir, storage=storage, metadata=metadata, allocator=allocator(options), extra=flags
    )
    return server.__enter__()


async def upload_many(url: str, requests: int, clients: int, size: int) -> float:
    """Seconds that ``clients`` concurrent clients take to upload ``requests`` files."""
    data = b"x" * (size - 1) + b"\n"
    remaining = iter(range(requests))

    async def client(http: httpx.AsyncClient) -> None:
        for _ in remaining:
            response = await http.post(
                "/v1/files", files={"file": ("a.txt", data)}, data={"purpose": "user_data"}
            )
            response.raise_for_status()

    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=60) as http:
        started = time.perf_counter()
        async with asyncio.TaskGroup() as group:
            for _ in range(clients):
                group.create_task(client(http))
        return time.perf_counter() - started


def report(
    rates: dict[str, list[float]], cpu: dict[str, list[float]], options: argparse.Namespace
) -> Report:
    """Uploads per second of each server, its ratio to the durable default and its CPU per
    1,000 uploads (medians); no target."""
    settings = {"size": options.size, "clients": options.clients, "requests": options.requests}
    settings |= {"rounds": options.rounds, "malloc": allocator_name(options)}
    result = Report("durability", settings)
    durable = median(rates["durable (default)"])
    for name, samples in rates.items():
        result.figures.append(Figure(name, median(samples), "uploads/s", samples))
        if name != "durable (default)":
            ratio = median(samples) / durable
            result.figures.append(Figure(f"{name} / durable", ratio, "x"))
        per_thousand = cpu[name]
        result.figures.append(
            Figure(f"{name}: server CPU per 1,000", median(per_thousand), "s", per_thousand)
        )
    return result


if __name__ == "__main__":
    sys.exit(main())
