"""Metadata benchmark: the cost of each metadata-store operation, in-process, per backend.

Measured for memory, SQLite (a file, WAL) and PostgreSQL (``--postgres-url``, unique table
prefix, dropped at the end), and on request MariaDB (``--backends ...,mariadb``,
``--mariadb-url``, likewise), with no HTTP in between: the wall-clock microseconds, the CPU
microseconds of the process (every thread: on SQLite the database's own work too, on
PostgreSQL not the server's), and the SQL statements and transactions of

- ``get``: `MetadataStore.get` of an existing file (what ``retrieve`` and ``content`` cost);
- ``list``: one page of 20 of an owner's 100 files (``GET /v1/files?limit=20``);
- ``create``: what the store is asked for a 1 KB upload under a byte quota: one `insert` of an
  ``active`` record (a small file recorded in one step), or, for a revision whose store has no
  such insert (its `insert` takes no ``idempotency_key``), `insert` + `reserve` + `commit`;
- ``stream``: `insert` + `reserve` + `commit` of a 1 KB file under a byte quota (what a file
  past ``RECORD_AFTER`` bytes, streamed with a pending record, asks for);
- ``delete``: `begin_delete` + `remove` (``DELETE /v1/files/{id}``).

``--before PATH`` measures, side by side in the same run, the package found under ``PATH``
(such as the ``src`` folder of a worktree of an older revision): each round runs one worker
process per revision and backend, alternating, and the medians over rounds are reported with
the ratio after/before of the CPU time (the steadier figure on a shared machine). Statements
(``st``) are counted with SQLAlchemy's ``before_cursor_execute`` event on the store's
``statement_engines`` (on the engine alone for a revision without them), a ``BEGIN`` (or
``START TRANSACTION``) sent as a statement not counted; transactions (``tx``) are its
``commit`` events. A read without a transaction commits nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import inspect
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

from harness.report import Figure, Report
from harness.results import add_results_option, run_and_finish

BENCHMARKS_DIR = Path(__file__).resolve().parent
SRC = BENCHMARKS_DIR.parent / "src"
POSTGRES_URL = "postgresql+asyncpg://postgres@127.0.0.1:5432/postgres"
MARIADB_URL = "mysql+aiomysql://root@127.0.0.1:3306/test"
OPERATIONS = ("get", "list", "create", "stream", "delete")
BACKENDS = ("memory", "sqlite", "postgresql")
OWNER = "bench"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.partition("\n")[0])
    parser.add_argument(
        "--backends", default=",".join(BACKENDS), help="(memory,sqlite,postgresql; or mariadb)"
    )
    parser.add_argument("--ops", type=int, default=1_000, help="operations per measure (1,000)")
    parser.add_argument("--rounds", type=int, default=3, help="alternations (3)")
    parser.add_argument("--before", type=Path, help="the src folder of the revision to compare")
    parser.add_argument("--postgres-url", default=POSTGRES_URL)
    parser.add_argument("--mariadb-url", default=MARIADB_URL)
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument("--quick", action="store_true", help="a smoke run: 20 operations, 1 round")
    add_results_option(parser)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--backend", help=argparse.SUPPRESS)
    return parser


# -- the worker: one backend, one revision, in a process of its own -----------------------------


class Counts:
    """Statements and commits seen on a store's engines since the last `take` (a ``BEGIN`` or
    ``START TRANSACTION`` sent as a statement counts as a transaction, not a statement)."""

    def __init__(self) -> None:
        self.statements = 0
        self.commits = 0

    def watch(self, store: Any) -> None:
        from sqlalchemy import event

        engines = getattr(store, "statement_engines", None)
        if engines is None and hasattr(store, "engine"):
            engines = (store.engine.sync_engine,)
        for engine in engines or ():
            event.listen(engine, "before_cursor_execute", self._statement)
            event.listen(engine, "commit", self._commit)

    def _statement(self, _connection: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if not statement.startswith(("BEGIN", "START TRANSACTION")):
            self.statements += 1

    def _commit(self, _connection: Any) -> None:
        self.commits += 1

    def take(self) -> tuple[int, int]:
        taken = (self.statements, self.commits)
        self.statements = self.commits = 0
        return taken


def _record(index: int) -> Any:
    from openai_files.metadata.base import FileRecord

    created_us = 1_700_000_000_000_000 + index
    return FileRecord(
        id=f"file-{uuid.uuid4().hex}",
        owner=OWNER,
        purpose="batch",
        filename="data.jsonl",
        bytes=0,
        created_us=created_us,
        expires_at=None,
        status="uploaded",
        status_details=None,
        storage_key=uuid.uuid4().hex,
        sha256=None,
        media_type=None,
        state="pending",
        changed_at=created_us // 1_000_000,
    )


async def _timed(
    ops: int, counts: Counts, step: Callable[[int], Awaitable[None]]
) -> dict[str, float]:
    counts.take()
    started, cpu = time.perf_counter(), time.process_time()
    for index in range(ops):
        await step(index)
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
    statements, commits = counts.take()
    return {
        "us": elapsed / ops * 1e6,
        "cpu_us": cpu / ops * 1e6,
        "statements": statements / ops,
        "commits": commits / ops,
    }


async def _measure(backend: str, ops: int, urls: dict[str, str]) -> dict[str, dict[str, float]]:
    from openai_files import MemoryMetadataStore, SQLMetadataStore
    from openai_files.metadata.base import Quota

    store: Any
    with tempfile.TemporaryDirectory() as folder:
        if backend == "memory":
            store = MemoryMetadataStore()
        elif backend == "sqlite":
            store = SQLMetadataStore(f"sqlite+aiosqlite:///{folder}/files.db")
        else:
            store = SQLMetadataStore(urls[backend], table_prefix=f"b{uuid.uuid4().hex[:10]}_")
        counts = Counts()
        try:
            quota = Quota(max_files=10**9, max_bytes=10**15)
            one_step = "idempotency_key" in inspect.signature(store.insert).parameters

            async def streamed(index: int) -> str:
                record = _record(index)
                await store.insert(record, quota=quota)
                await store.reserve(OWNER, record.id, 1024, quota=quota)
                done = record.replace(bytes=1024, status="processed", changed_at=record.changed_at)
                return str(await store.commit(done))

            async def create(index: int) -> str:
                if not one_step:
                    return await streamed(index)
                record = _record(index).replace(bytes=1024, status="processed", state="active")
                return str(await store.insert(record, quota=quota))

            kept = [await create(index) for index in range(100)]
            now = 1_700_000_000
            counts.watch(store)
            figures: dict[str, dict[str, float]] = {}

            async def get(index: int) -> None:
                assert await store.get(OWNER, kept[index % len(kept)], now=now) is not None

            async def page(_index: int) -> None:
                assert len(await store.list(OWNER, now=now, limit=20)) == 20

            created: list[str] = []

            async def make(index: int) -> None:
                created.append(await create(1_000 + index))

            async def stream(index: int) -> None:
                created.append(await streamed(1_000 + ops + index))

            async def delete(index: int) -> None:
                file_id = created[index]
                assert await store.begin_delete(OWNER, file_id, now=now) is not None
                await store.remove(OWNER, file_id)

            figures["get"] = await _timed(ops, counts, get)
            figures["list"] = await _timed(ops, counts, page)
            figures["create"] = await _timed(ops, counts, make)
            figures["stream"] = await _timed(ops, counts, stream)
            figures["delete"] = await _timed(ops, counts, delete)
            return figures
        finally:
            if backend in urls:
                await store.drop_schema()
            await store.aclose()


def worker(args: argparse.Namespace) -> None:
    urls = {"postgresql": args.postgres_url, "mariadb": args.mariadb_url}
    figures = asyncio.run(_measure(args.backend, args.ops, urls))
    print(json.dumps(figures))


# -- the driver: rounds of workers, medians, a table ---------------------------------------------


def _run_worker(src: Path, backend: str, args: argparse.Namespace) -> dict[str, Any]:
    argv = [sys.executable, __file__, "--worker", "--backend", backend, "--ops", str(args.ops)]
    argv += ["--postgres-url", args.postgres_url, "--mariadb-url", args.mariadb_url]
    env = {**os.environ, "PYTHONPATH": str(src)}
    done = subprocess.run(argv, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"{backend} worker ({src}) failed:\n{done.stderr}")
    figures: dict[str, Any] = json.loads(done.stdout.splitlines()[-1])
    return figures


def _median(values: list[float]) -> float:
    ordered = sorted(values)
    middle = len(ordered) // 2
    return ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    options = build_parser().parse_args(argv)
    if options.quick:
        options.ops, options.rounds = 20, 1
    return options


def run(args: argparse.Namespace) -> Report:
    """Rounds of workers, then per operation and backend (and revision) the medians over
    rounds: a table printed, the figures reported (no target: the statement counts are held by
    the test suite)."""
    revisions = {"after": SRC}
    if args.before is not None:
        revisions = {"before": args.before.resolve(), **revisions}
    backends = args.backends.split(",")
    settings = {"backends": args.backends, "ops": args.ops, "rounds": args.rounds}
    report = Report("metadata ops", settings | ({"before": "yes"} if args.before else {}))
    runs: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for round_ in range(args.rounds):
        for backend in backends:
            for name, src in revisions.items():
                runs.setdefault((name, backend), []).append(_run_worker(src, backend, args))
        print(f"round {round_ + 1}/{args.rounds} done", file=sys.stderr)
    table: dict[str, Any] = {}
    print(f"{'operation':<8} {'backend':<11} " + " ".join(f"{n:>29}" for n in revisions), end="")
    print("  cpu after/before" if len(revisions) == 2 else "")
    for operation in OPERATIONS:
        for backend in backends:
            cells, medians = [], []
            for name in revisions:
                series = [run[operation] for run in runs[(name, backend)]]
                us = _median([figures["us"] for figures in series])
                cpu = _median([figures["cpu_us"] for figures in series])
                statements, commits = series[0]["statements"], series[0].get("commits", -1)
                medians.append(cpu)
                cells.append(f"{us:6.0f} µs {cpu:6.0f} cpu {statements:3.0f} st {commits:1.0f} tx")
                table[f"{operation}/{backend}/{name}"] = {
                    "us": us,
                    "cpu_us": cpu,
                    "statements": statements,
                    "commits": commits,
                }
                label = f"{operation}, {backend}" + (f", {name}" if len(revisions) == 2 else "")
                counted = f"{statements:g} st, {commits:g} tx"
                report.figures += [
                    Figure(f"{label}: wall", us, "µs", [f["us"] for f in series]),
                    Figure(f"{label}: CPU ({counted})", cpu, "µs", [f["cpu_us"] for f in series]),
                ]
            ratio = f"  {medians[1] / medians[0]:10.2f}" if len(medians) == 2 else ""
            if len(medians) == 2:
                label = f"{operation}, {backend}: CPU after / before"
                report.figures.append(Figure(label, medians[1] / medians[0], "x"))
            print(f"{operation:<8} {backend:<11} " + " ".join(f"{c:>29}" for c in cells) + ratio)
    if args.json is not None:
        args.json.write_text(json.dumps(table, indent=2))
    return report


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.worker:
        worker(args)
        return 0
    return run_and_finish(run, args)


if __name__ == "__main__":
    sys.exit(main())
