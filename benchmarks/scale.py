"""Scale benchmark: what each metadata operation costs when one owner has millions of files.

For each database, two stores side by side in one run: one whose owner has ``--small`` files
(default 10,000) and one whose owner has the large count (default 10,000,000 on PostgreSQL,
1,000,000 on SQLite and MariaDB), filled in bulk through SQL (``INSERT ... SELECT`` over a
series the database makes itself: through the store, one transaction a file, it would take
hours), analysed, then measured in-process on the store (no HTTP in between), as the median
of ``--repeat`` turns, each calling every operation once on each store, the stores taking
turns to go first:

- ``first page``: `SQLMetadataStore.list`, 100 files, newest first;
- ``middle desc`` / ``middle asc``: the page of 100 after a cursor in the middle of the owner's
  files, in both orders;
- ``purpose page``: 100 files of one purpose (a quarter of them) after the middle cursor;
- ``retrieve``: `get` of a file in the middle;
- ``create``: `insert` + `commit` of a new file; ``delete``: `begin_delete` + `remove` of one;
- ``total``: `count` (the ``total`` of an offset page under ``Policy(list_offset=True)``), and
  ``offset N``: `list_at` of 100 files from offset N (what a bound on ``offset`` keeps cheap);
- ``sweep``: then a quarter of the files (the large store: ``--expired``, default 1,000,000)
  are made expired, and `FilesService.sweep` runs ``--sweep-batches`` batches of 100: files
  removed per second, beside the same with the small store's quarter expired.

Targets (each large / small): a page after a cursor anywhere <= 1.5x the first page of the same
store, create, retrieve and delete <= 1.5x; an offset page with its total <= 2x a keyset page
for offsets up to `Policy.list_offset_max` (deeper ones are shown, not targeted: they are
refused). Each store's tables have a unique prefix (SQLite: a
file of its own) and are dropped at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from harness.measure import rotated
from harness.report import Figure, Report, Target, median
from harness.stores import add_postgres_option, postgres_missing
from sqlalchemy import text

from openai_files import FilesService, MemoryStorage, SQLMetadataStore
from openai_files.metadata.base import FileRecord, Order
from openai_files.policy import Policy

MARIADB_URL = "mysql+aiomysql://root@127.0.0.1:3306/test"
DATABASES = ("postgresql", "sqlite", "mariadb")
LARGE = {"postgresql": 10_000_000, "sqlite": 1_000_000, "mariadb": 1_000_000}
OWNER = "bench"
PURPOSES = ("batch", "fine-tune", "assistants", "user_data")
PAGE = 100
NOW = 1_800_000_000
T0 = (NOW - 400 * 86_400) * 1_000_000  # the oldest file's creation, in microseconds
STEP_US = 1_000  # between two files
CHUNK = 1_000_000  # rows per INSERT ... SELECT
MAX_AFTER_CURSOR = 1.5
MAX_OPERATION = 1.5
MAX_OFFSET_PAGE = 2.0
OFFSETS = (1_000, 10_000, 100_000)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.partition("\n")[0])
    parser.add_argument("--databases", default=",".join(DATABASES), help="(all three)")
    parser.add_argument("--small", type=int, default=10_000, help="files (10,000)")
    for name, count in LARGE.items():
        parser.add_argument(f"--large-{name}", type=int, default=count, help=f"files ({count:,})")
    parser.add_argument("--repeat", type=int, default=50, help="calls per figure (50)")
    parser.add_argument("--expired", type=int, default=1_000_000, help="(1,000,000)")
    parser.add_argument("--sweep-batches", type=int, default=20, help="batches of 100 (20)")
    parser.add_argument("--mariadb-url", default=MARIADB_URL)
    add_postgres_option(parser)
    parser.add_argument("--quick", action="store_true", help="a smoke run: 1,000 vs 20,000")
    return parser


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    options = build_parser().parse_args(argv)
    if options.quick:
        options.small, options.repeat, options.sweep_batches = 1_000, 5, 2
        for name in LARGE:
            setattr(options, f"large_{name}", 20_000)
        options.expired = 5_000
    return options


# -- filling a store in bulk -------------------------------------------------------------------


def _file_id(index: int) -> str:
    """The id the bulk fill gives file ``index`` (the order of ids is that of creation)."""
    return f"file-{index:024d}"


def _created_us(index: int) -> int:
    return T0 + index * STEP_US


_SERIES = {
    "postgresql": "FROM generate_series({start}::bigint, {stop}::bigint) AS s(n)",
    "sqlite": "FROM (WITH RECURSIVE s(n) AS (SELECT {start} UNION ALL SELECT n + 1 FROM s "
    "WHERE n < {stop}) SELECT n FROM s) AS s",
    "mysql": "FROM (SELECT seq AS n FROM seq_{start}_to_{stop}) AS s",
}
_ID = {
    "postgresql": "'file-' || lpad(n::text, 24, '0')",
    "sqlite": "printf('file-%024d', n)",
    "mysql": "CONCAT('file-', LPAD(n, 24, '0'))",
}
_KEY = {"postgresql": "md5(n::text)", "sqlite": "lower(hex(randomblob(16)))", "mysql": "MD5(n)"}
"""Storage keys as the service makes them: 32 hex digits, in no order."""


def _fill_statement(dialect: str, table: str, start: int, stop: int) -> str:
    """Files ``start`` to ``stop`` of `OWNER`: a quarter of each purpose, the batch files with
    an expiry 30 days after now, all active."""
    purpose = (
        f"CASE n % 4 WHEN 0 THEN '{PURPOSES[0]}' WHEN 1 THEN '{PURPOSES[1]}' "
        f"WHEN 2 THEN '{PURPOSES[2]}' ELSE '{PURPOSES[3]}' END"
    )
    expiry = f"CASE n % 4 WHEN 0 THEN {NOW + 30 * 86_400} ELSE NULL END"
    return (
        f"INSERT INTO {table} (id, owner, purpose, filename, bytes, created_us, expires_at, "
        "status, status_details, storage_key, sha256, media_type, state, changed_at, "
        f"hold_count, etag) SELECT {_ID[dialect]}, '{OWNER}', {purpose}, 'input.jsonl', 1024, "
        f"{T0} + n * {STEP_US}, {expiry}, 'processed', NULL, {_KEY[dialect]}, NULL, "
        f"'application/jsonl', 'active', {NOW}, 0, NULL "
        + _SERIES[dialect].format(start=start, stop=stop)
    )


async def fill(store: SQLMetadataStore, count: int) -> float:
    """Write ``count`` files of `OWNER` and their counts in bulk, then analyse; the seconds
    it took."""
    started = time.perf_counter()
    await store.create_schema()
    dialect = "mysql" if store.engine.dialect.name == "mariadb" else store.engine.dialect.name
    tables = store.tables
    for start in range(0, count, CHUNK):
        stop = min(start + CHUNK, count) - 1
        async with store.engine.begin() as connection:
            await connection.execute(text(_fill_statement(dialect, tables.files.name, start, stop)))
    async with store.engine.begin() as connection:
        for index, purpose in enumerate(PURPOSES):
            files = len(range(index, count, len(PURPOSES)))
            await connection.execute(
                text(
                    f"INSERT INTO {tables.counts.name} (owner, purpose, files) "
                    f"VALUES ('{OWNER}', '{purpose}', {files})"
                )
            )
        await connection.execute(
            text(
                f"INSERT INTO {tables.usage.name} (owner, files, bytes, open_uploads) "
                f"VALUES ('{OWNER}', {count}, {count * 1024}, 0)"
            )
        )
    await _analyse(store, tables.files.name)
    return time.perf_counter() - started


async def _analyse(store: SQLMetadataStore, table: str) -> None:
    statement = {
        "postgresql": f"ANALYZE {table}",
        "sqlite": "ANALYZE",
    }.get(store.engine.dialect.name, f"ANALYZE TABLE {table}")
    async with store.engine.begin() as connection:
        await connection.execute(text(statement))


# -- the operations --------------------------------------------------------------------------


@dataclass
class Sized:
    """One store of ``count`` files, and the operations measured on it."""

    label: str
    count: int
    store: SQLMetadataStore
    created: int = 0
    deleted: int = 0

    @property
    def middle(self) -> tuple[int, str]:
        index = self.count // 2
        return (_created_us(index), _file_id(index))

    def operations(self) -> dict[str, Callable[[], Awaitable[object]]]:
        store, middle = self.store, self.middle
        listed: dict[str, Callable[[], Awaitable[object]]] = {
            "first page": lambda: self._page(None, "desc", None),
            "middle desc": lambda: self._page(middle, "desc", None),
            "middle asc": lambda: self._page(middle, "asc", None),
            "purpose page": lambda: self._page(middle, "desc", PURPOSES[1]),
            "retrieve": lambda: store.get(OWNER, middle[1], now=NOW),
            "create": self._create,
            "delete": self._delete,
            "total": lambda: store.count(OWNER, now=NOW),
        }
        for offset in OFFSETS:
            if offset < self.count:
                listed[f"offset {offset:,}"] = partial(self._at, offset)
        return listed

    async def _page(self, after: tuple[int, str] | None, order: Order, purpose: str | None) -> None:
        page = await self.store.list(
            OWNER,
            now=NOW,
            purpose=purpose,
            after=after,
            limit=PAGE,
            order=order,
        )
        assert len(page) == PAGE, len(page)

    async def _at(self, offset: int) -> None:
        page = await self.store.list_at(OWNER, now=NOW, offset=offset, limit=PAGE)
        assert len(page) == PAGE

    async def _create(self) -> None:
        self.created += 1
        created_us = _created_us(self.count + self.created)
        record = FileRecord(
            id=f"file-new{self.created:021d}",
            owner=OWNER,
            purpose="batch",
            filename="input.jsonl",
            bytes=1024,
            created_us=created_us,
            expires_at=None,
            status="uploaded",
            status_details=None,
            storage_key=secrets.token_hex(16),
            sha256=None,
            media_type=None,
            state="pending",
            changed_at=NOW,
        )
        await self.store.insert(record)
        await self.store.commit(record.replace(status="processed"))

    async def _delete(self) -> None:
        # The files `_create` made, oldest first (created runs ahead: create is measured first).
        self.deleted += 1
        file_id = f"file-new{self.deleted:021d}"
        assert await self.store.begin_delete(OWNER, file_id, now=NOW) is not None
        await self.store.remove(OWNER, file_id)


async def _timed(call: Callable[[], Awaitable[object]]) -> float:
    started = time.perf_counter()
    await call()
    return (time.perf_counter() - started) * 1000


async def measure(stores: list[Sized], repeat: int) -> dict[str, dict[str, list[float]]]:
    """Milliseconds per call, by store and operation: in each of ``repeat`` turns (after two
    untimed ones, which warm caches), every operation once on each store, the stores taking
    turns to go first, so that the machine's drift falls on every figure alike."""
    times: dict[str, dict[str, list[float]]] = {sized.label: {} for sized in stores}
    names = list(stores[-1].operations())
    for turn in range(-2, repeat):
        for name in names:
            for sized in rotated(stores, turn):
                operations = sized.operations()
                if name not in operations:
                    continue
                elapsed = await _timed(operations[name])
                if turn >= 0:
                    times[sized.label].setdefault(name, []).append(elapsed)
    return times


async def bytes_per_file(sized: Sized) -> float:
    """The bytes the files table and its indexes take on disk, per file."""
    store, name = sized.store, sized.store.tables.files.name
    dialect = store.engine.dialect.name
    if dialect == "postgresql":
        query = f"SELECT pg_total_relation_size('{name}')"
    elif dialect == "sqlite":
        query = "SELECT page_count * page_size FROM pragma_page_count(), pragma_page_size()"
    else:
        query = (
            "SELECT data_length + index_length FROM information_schema.tables "
            f"WHERE table_schema = DATABASE() AND table_name = '{name}'"
        )
    async with store.engine.connect() as connection:
        size = (await connection.execute(text(query))).scalar_one()
    return int(size) / sized.count


async def sweep_rate(sized: Sized, expired: int, batches: int) -> float:
    """Make ``expired`` batch files of the store expired, then sweep ``batches`` batches of
    100: the files removed per second."""
    files = sized.store.tables.files.name
    async with sized.store.engine.begin() as connection:
        await connection.execute(
            text(
                f"UPDATE {files} SET expires_at = {NOW - 60} WHERE purpose = '{PURPOSES[0]}' "
                f"AND created_us < {_created_us(expired * len(PURPOSES))}"
            )
        )
    await _analyse(sized.store, files)
    service = FilesService(MemoryStorage(), sized.store, policy=Policy(), clock=lambda: NOW)
    started = time.perf_counter()
    report = await service.sweep(max_batches=batches)
    return report.removed / (time.perf_counter() - started)


# -- running ---------------------------------------------------------------------------------


def _url(database: str, options: argparse.Namespace, folder: Path, label: str) -> str:
    if database == "sqlite":
        return f"sqlite+aiosqlite:///{folder / f'{label}.db'}"
    return str(options.postgres_url if database == "postgresql" else options.mariadb_url)


async def run_database(database: str, options: argparse.Namespace, report: Report) -> None:
    large = getattr(options, f"large_{database}")
    sizes = {"small": options.small, "large": large}
    stamp = f"s{int(time.time()) % 100_000_000}_"
    with tempfile.TemporaryDirectory(prefix="openai-files-scale-") as temp:
        stores = [
            Sized(
                label,
                count,
                SQLMetadataStore(
                    _url(database, options, Path(temp), label), table_prefix=f"{stamp}{label}_"
                ),
            )
            for label, count in sizes.items()
        ]
        try:
            for sized in stores:
                seconds = await fill(sized.store, sized.count)
                print(f"{database}: {sized.count:,} files filled in {seconds:,.0f} s", flush=True)
            sizes_on_disk = [await bytes_per_file(sized) for sized in stores]
            times = await measure(stores, options.repeat)
            rates = [
                await sweep_rate(
                    sized,
                    sized.count // 4 if sized.label == "small" else options.expired,
                    options.sweep_batches,
                )
                for sized in stores
            ]
        finally:
            for sized in stores:
                await sized.store.drop_schema()
                await sized.store.aclose()
    _record(report, database, stores, times, rates)
    for sized, size in zip(stores, sizes_on_disk, strict=True):
        label = f"{database} {sized.count:,}: table and indexes per file"
        report.figures.append(Figure(label, size, "bytes"))


def _expired(sized: Sized, options: argparse.Namespace) -> int:
    """The files made expired: the small store's batch files, ``--expired`` of the large's."""
    quarter = sized.count // len(PURPOSES)
    return quarter if sized.label == "small" else min(quarter, options.expired)


def _record(
    report: Report,
    database: str,
    stores: list[Sized],
    times: dict[str, dict[str, list[float]]],
    rates: list[float],
) -> None:
    small, large = stores
    for sized in stores:
        for name, samples in times[sized.label].items():
            label = f"{database} {sized.count:,}: {name}"
            report.figures.append(Figure(label, median(samples), "ms", samples))
    for sized, rate in zip(stores, rates, strict=True):
        report.figures.append(Figure(f"{database} {sized.count:,}: sweep", rate, "files/s"))
    big = {name: median(samples) for name, samples in times[large.label].items()}
    little = {name: median(samples) for name, samples in times[small.label].items()}
    at = f"{database} {large.count:,}"
    for name in ("middle desc", "middle asc", "purpose page"):
        ratio = big[name] / big["first page"]
        report.targets.append(
            Target(f"{at}: {name} / first page", ratio, MAX_AFTER_CURSOR, "x", False)
        )
    for name in ("create", "retrieve", "delete", "first page"):
        ratio = big[name] / little[name]
        report.targets.append(
            Target(f"{at}: {name} / at {small.count:,}", ratio, MAX_OPERATION, "x", False)
        )
    bound = Policy().list_offset_max
    for offset in OFFSETS:
        name = f"offset {offset:,}"
        if name in big and (bound is None or offset <= bound):  # deeper ones are refused
            ratio = (big["total"] + big[name]) / big["first page"]
            report.targets.append(
                Target(f"{at}: total + {name} / first page", ratio, MAX_OFFSET_PAGE, "x", False)
            )


def unavailable(database: str, options: argparse.Namespace) -> str | None:
    if database == "postgresql":
        return postgres_missing(options.postgres_url)
    return None


def main(argv: Sequence[str] | None = None) -> int:
    options = parse_args(argv)
    databases = options.databases.split(",")
    settings = {"small": options.small, "repeat": options.repeat, "page": PAGE}
    settings.update({f"large {name}": getattr(options, f"large_{name}") for name in databases})
    report = Report("scale", settings)
    for database in databases:
        missing = unavailable(database, options)
        if missing is not None:
            print(f"scale: skipping {database}: {missing}")
            continue
        asyncio.run(run_database(database, options, report))
    report.print()
    return 0 if report.passed else 1


if __name__ == "__main__":
    sys.exit(main())
