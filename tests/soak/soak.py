"""Soak under faults: two replicas on S3 and PostgreSQL, 32 clients for a bounded time, faults
injected at random into the replicas' backends; then a check that nothing was lost, corrupted,
leaked or over quota.

Run on purpose, not by ``make test``::

    .venv/bin/python tests/soak/soak.py            # 180 seconds of load
    .venv/bin/python tests/soak/soak.py --quick    # 20 seconds

What runs: moto's S3 server on a free loopback port with a bucket, tables with a fresh prefix in
the PostgreSQL of ``--postgres-url`` (dropped at the end), and two replicas
(``soak_replica.py``) sharing both. Their storage fails ``put``, ``get`` and ``delete`` with
``--fault-probability``, their metadata store any call with ``--metadata-fault-probability``.
32 clients (``--clients``), each with its own API key (some owners have two keys, so two
clients race for one quota), send requests to either replica at random: uploads of 0 to 2 MiB
(a few of several MiB, which cross S3 parts), lists paged with small limits, whole and ranged
downloads checked against the bytes sent, deletes, uploads sent twice at once with one
``Idempotency-Key`` (one copy to each replica) and once more after, and files sent in parts
through the Uploads API.

Every response is classified: success; an expected client error (``quota_exceeded``, 404 when
retrying a delete that failed, an upload no longer pending after a step of it failed); an
injected fault (503 ``backend_unavailable`` naming an injected fault); anything else is a
failure. While the clients run, each owner's usage is read from the database every second and
held against the quota, and each replica's RSS is sampled.

Then the replicas stop and the library, without faults, cancels the uploads left pending and
sweeps (``sweep(stale_after=0)``, ``sweep_orphans(grace=0)``). It checks that every file a
client saw created and did not delete is listed once and reads back with its SHA-256; that a
file whose creation or deletion failed, if it is there, is intact and its owner's; that no S3
object lacks a record and no record its object, nothing is stuck half-way and no multipart
upload is left incomplete; and that each owner's usage equals what it stores. The JSON goes to
``tests/soak/results/soak-*.json`` with the replicas' logs beside it. Exit status: 1 if a
target is missed, 2 if a service is missing.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import shutil
import sys
import tempfile
import time
from collections.abc import Sequence
from contextlib import ExitStack, suppress
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import httpx
from rig import (
    RESULTS_DIR,
    S3_CREDENTIALS,
    S3_REGION,
    SOAK_DIR,
    Server,
    Target,
    add_allocator_option,
    add_postgres_option,
    allocator,
    allocator_name,
    create_bucket,
    machine,
    moto_server,
    open_descriptors,
    peak_rss_bytes,
    postgres_missing,
    postgres_tables,
    print_table,
    rss_bytes,
    s3_client,
    s3_server_missing,
    s3_storage_url,
    target_rows,
)
from soak_check import BUCKET, PREFIX, Findings, verify
from soak_clients import INJECTED, MAX_EXAMPLES, PART_SIZE, Client, Expected, MiB, Tally
from soak_replica import FAULTS_PATH
from sqlalchemy import func, select

from openai_files import FilesService, Policy, SQLMetadataStore
from openai_files.metadata.base import Quota
from openai_files.storage.s3 import S3Storage

DEFAULT_DURATION = 180.0
QUICK_DURATION = 20.0
REPLICAS = 2
SWEEP_INTERVAL = 5.0
DRAIN_SECONDS = 120.0
"""How long clients may take to finish their last request after the deadline."""
SAMPLE_SECONDS = 1.0
SETTLE_SECONDS = 7.0
"""How long after the load the replicas are left to close idle connections before their
descriptors are counted."""
MAX_LATE_GROWTH_MIB = 64
"""RSS a replica may gain from a third of the way through the load to its end."""


# -- while the clients run ----------------------------------------------------------------------


@dataclass
class Watch:
    """Samples, every second, each owner's usage against the quota and each replica's RSS."""

    store: SQLMetadataStore
    quota: Quota
    pids: dict[str, int]
    samples: int = 0
    violations: list[str] = field(default_factory=list)
    highest: dict[str, tuple[int, int]] = field(default_factory=dict)
    rss: dict[str, list[tuple[float, int]]] = field(default_factory=dict)
    descriptors: dict[str, list[tuple[int, int]]] = field(default_factory=dict)
    """Each replica's open (files, sockets), at each sample."""

    async def run(self, stop: asyncio.Event, started: float) -> None:
        while not stop.is_set():
            await self.sample(time.monotonic() - started)
            with suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), SAMPLE_SECONDS)

    async def sample(self, elapsed: float) -> None:
        for name, pid in self.pids.items():
            self.rss.setdefault(name, []).append((elapsed, rss_bytes(pid)))
            self.descriptors.setdefault(name, []).append(open_descriptors(pid))
        usage, files = self.store.tables.usage, self.store.tables.files
        counted = (
            select(files.c.owner, func.count(), func.coalesce(func.sum(files.c.bytes), 0))
            .where(files.c.state.in_(("pending", "active")))
            .group_by(files.c.owner)
        )
        async with self.store.engine.connect() as connection:
            rows = [
                ("usage row", *row)
                for row in (
                    await connection.execute(select(usage.c.owner, usage.c.files, usage.c.bytes))
                )
            ]
            rows += [("records", *row) for row in (await connection.execute(counted))]
        self.samples += 1
        for source, owner, count, size in rows:
            if not self.quota.allows(int(count), int(size)):
                self.violations.append(f"{elapsed:.0f}s {owner} {source}: {count} files, {size} B")
            files_seen, bytes_seen = self.highest.get(owner, (0, 0))
            self.highest[owner] = (max(files_seen, int(count)), max(bytes_seen, int(size)))


# -- the run ------------------------------------------------------------------------------------


@dataclass
class Soak:
    """One run: what the clients saw, what the replicas injected, what the check found."""

    options: argparse.Namespace
    stamp: datetime
    tally: Tally
    clients: list[Client]
    sent: dict[str, Expected]
    load_before: tuple[float, float, float]
    load_after: tuple[float, float, float] = (0.0, 0.0, 0.0)
    elapsed: float = 0.0
    watch: Watch | None = None
    faults: dict[str, dict[str, dict[str, int]]] = field(default_factory=dict)
    memory: dict[str, dict[str, float]] = field(default_factory=dict)
    leaks: dict[str, dict[str, int]] = field(default_factory=dict)
    """Each replica's open files and sockets as the load began and once it had ended and its
    connections closed, and the temporary files it left."""
    findings: Findings = field(default_factory=Findings)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.partition("\n")[0])
    parser.add_argument("--duration", type=float, default=DEFAULT_DURATION, help="seconds (180)")
    parser.add_argument("--quick", action="store_true", help=f"{QUICK_DURATION:.0f} seconds")
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--owners", type=int, default=20, help="fewer than clients: shared (20)")
    parser.add_argument("--fault-probability", type=float, default=0.02, help="storage (0.02)")
    parser.add_argument(
        "--metadata-fault-probability", type=float, default=0.005, help="metadata (0.005)"
    )
    parser.add_argument("--max-files", type=int, default=16, help="quota per owner (16)")
    parser.add_argument("--max-bytes", type=int, default=24 * MiB, help="quota (24 MiB)")
    parser.add_argument("--max-operations", type=int, default=100_000, help="per client")
    parser.add_argument("--seed", type=int, default=1)
    add_postgres_option(parser)
    add_allocator_option(parser)
    return parser


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    options = build_parser().parse_args(argv)
    if options.quick:
        options.duration = QUICK_DURATION
    return options


def replica(
    number: int,
    options: argparse.Namespace,
    storage_url: str,
    table_prefix: str,
    keys: dict[str, str],
    logs: Path,
) -> Server:
    """``soak_replica.py`` on a free port, its faults seeded from ``--seed`` and ``number``."""
    argv = [sys.executable, str(SOAK_DIR / "soak_replica.py"), "--port", "{port}"]
    argv += ["--storage", storage_url, "--metadata", options.postgres_url]
    argv += ["--table-prefix", table_prefix, "--seed", str(options.seed * 100 + number)]
    argv += ["--fault-probability", str(options.fault_probability)]
    argv += ["--metadata-fault-probability", str(options.metadata_fault_probability)]
    argv += ["--max-files", str(options.max_files), "--max-bytes", str(options.max_bytes)]
    argv += ["--sweep-interval", str(SWEEP_INTERVAL)]
    for key, owner in keys.items():
        argv += ["--key", f"{key}={owner}"]
    temp = logs / f"replica-{number}-tmp"  # empty: what is in it at the end was left behind
    temp.mkdir()
    env = {**allocator(options), **S3_CREDENTIALS, "TMPDIR": str(temp)}
    return Server(f"replica-{number}", argv, log=logs / f"replica-{number}.log", env=env)


def make_clients(soak: Soak) -> dict[str, str]:
    """The clients, each with its own API key; the owner of each key."""
    options, keys = soak.options, {}
    for number in range(options.clients):
        owner = f"owner-{number % options.owners:02d}"
        key = f"sk-soak-{number:02d}-{secrets.token_hex(8)}"
        keys[key] = owner
        seed = options.seed * 1000 + number
        soak.clients.append(Client(number, key, owner, [], soak.tally, soak.sent, seed))
    return keys


async def load(soak: Soak, table_prefix: str, servers: Sequence[Server]) -> None:
    """Warm the replicas up, then run the clients until the deadline and their last requests,
    sampling quotas and memory all along."""
    options, clients = soak.options, soak.clients
    for server in servers:
        await clients[0].call("warm-up", "GET", "/v1/files", replica=server.url)
    store = SQLMetadataStore(options.postgres_url, table_prefix=table_prefix)
    quota = Quota(max_files=options.max_files, max_bytes=options.max_bytes)
    soak.watch = watch = Watch(store, quota, {server.name: server.pid for server in servers})
    started = time.monotonic()
    stop = asyncio.Event()
    try:
        await watch.sample(0.0)
        watcher = asyncio.create_task(watch.run(stop, started))
        deadline = asyncio.get_running_loop().time() + options.duration
        runs = asyncio.gather(*(c.run(deadline, options.max_operations) for c in clients))
        try:
            await asyncio.wait_for(runs, options.duration + DRAIN_SECONDS)
        except TimeoutError:
            soak.tally.fail("clients hung", f"running {DRAIN_SECONDS:.0f} s after the deadline")
        stop.set()
        await watcher
        soak.elapsed = time.monotonic() - started
        await watch.sample(soak.elapsed)
    finally:
        await store.aclose()


def memory(watch: Watch, servers: Sequence[Server], elapsed: float) -> dict[str, dict[str, float]]:
    """Each replica's RSS when the load began, a third of the way through, at its end, and
    its highest since the replica started (VmHWM), in MiB."""
    figures = {}
    for server in servers:
        series = watch.rss[server.name]
        third = next(rss for t, rss in series if t >= elapsed / 3 or t == series[-1][0])
        peak = max(peak_rss_bytes(server.pid), *(rss for _, rss in series))
        figures[server.name] = {
            "start": series[0][1] / MiB,
            "third": third / MiB,
            "end": series[-1][1] / MiB,
            "peak": peak / MiB,
        }
    return figures


def leaks(watch: Watch, servers: Sequence[Server], scratch: Path) -> dict[str, dict[str, int]]:
    """Each replica's open files and sockets when the load began and after it, once the
    clients' connections have closed (uvicorn lets an idle one go after 5 s), and the files
    left in its temporary directory."""
    time.sleep(SETTLE_SECONDS)
    found = {}
    for server in servers:
        files, sockets = open_descriptors(server.pid)
        start_files, start_sockets = watch.descriptors[server.name][0]
        temp = scratch / f"{server.name}-tmp"
        found[server.name] = {
            "files at start": start_files,
            "files at end": files,
            "sockets at start": start_sockets,
            "sockets at end": sockets,
            "temporary files": sum(1 for path in temp.rglob("*") if path.is_file()),
        }
    return found


async def check_after(soak: Soak, endpoint: str, table_prefix: str) -> None:
    """The check after the load, through the library on the same S3 and tables, no faults."""
    options = soak.options
    quota = Quota(max_files=options.max_files, max_bytes=options.max_bytes)
    storage = S3Storage(
        BUCKET,
        prefix=PREFIX,
        endpoint=endpoint,
        region=S3_REGION,
        access_key_id=S3_CREDENTIALS["AWS_ACCESS_KEY_ID"],
        secret_access_key=S3_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
        allow_http=True,
    )
    service = FilesService(
        storage,
        SQLMetadataStore(options.postgres_url, table_prefix=table_prefix),
        policy=Policy(quota=quota),
    )
    async with service:
        soak.findings = await verify(service, soak.clients, s3_client(endpoint), soak.sent)


async def prepare_schema(url: str, table_prefix: str) -> None:
    """Create the tables once, before the replicas race to."""
    store = SQLMetadataStore(url, table_prefix=table_prefix)
    try:
        await store.create_schema()
    finally:
        await store.aclose()


def run(options: argparse.Namespace) -> Soak:
    soak = Soak(options, datetime.now(UTC), Tally(), [], {}, os.getloadavg())
    with tempfile.TemporaryDirectory(prefix="openai-files-soak-") as temp, ExitStack() as stack:
        scratch = Path(temp)
        moto = stack.enter_context(moto_server(scratch / "moto"))
        create_bucket(moto.url, BUCKET)
        table_prefix = stack.enter_context(postgres_tables(options.postgres_url, "soak"))
        asyncio.run(prepare_schema(options.postgres_url, table_prefix))
        storage_url = s3_storage_url(moto.url, BUCKET, PREFIX) + f"&part_size={PART_SIZE}"
        keys = make_clients(soak)
        servers = [
            stack.enter_context(replica(n, options, storage_url, table_prefix, keys, scratch))
            for n in range(1, REPLICAS + 1)
        ]
        for client in soak.clients:
            client.replicas = [server.url for server in servers]
        try:
            asyncio.run(load(soak, table_prefix, servers))
            soak.load_after = os.getloadavg()
            soak.faults = {server.name: fault_counts(server) for server in servers}
            assert soak.watch is not None
            soak.memory = memory(soak.watch, servers, soak.elapsed)
            soak.leaks = leaks(soak.watch, servers, scratch)
            for server in servers:  # before the check: no sweeper of theirs runs meanwhile
                server.__exit__(None, None, None)
            asyncio.run(check_after(soak, moto.url, table_prefix))
        finally:
            for server in servers:
                keep_log(soak, server)
    return soak


def fault_counts(server: Server) -> dict[str, dict[str, int]]:
    answer: dict[str, dict[str, int]] = httpx.get(server.url + FAULTS_PATH).json()
    return answer


def keep_log(soak: Soak, server: Server) -> None:
    RESULTS_DIR.mkdir(exist_ok=True)
    if server.log.exists():
        shutil.copyfile(server.log, RESULTS_DIR / f"{result_name(soak)}-{server.name}.log")


def result_name(soak: Soak) -> str:
    return f"soak-{soak.stamp:%Y%m%d-%H%M%S}{'-quick' if soak.options.quick else ''}"


# -- the results --------------------------------------------------------------------------------


def figures(soak: Soak) -> dict[str, int]:
    """The headline counts: what ran, what was injected, what went wrong."""
    failures, findings = soak.tally.failures, soak.findings
    counts, watch = findings.counts, soak.watch
    outcomes = soak.tally.outcomes()
    named = ("5xx other than injected", "transport error", "idempotency", "file lost", "checksum")
    return {
        "requests": sum(outcomes.values()),
        "faults injected by the replicas": sum(
            sum(ops.values()) for backends in soak.faults.values() for ops in backends.values()
        ),
        "injected 503s seen by clients": outcomes[INJECTED],
        "expected client errors": sum(soak.tally.expected.values()),
        "5xx other than injected 503s": failures["5xx other than injected"],
        "requests failed in transport": failures["transport error"],
        "idempotent uploads answered with two files": failures["idempotency"],
        "other failed requests": sum(failures.values()) - sum(failures[name] for name in named),
        "files lost": failures["file lost"] + counts["file lost"],
        "files corrupted": failures["checksum"] + counts["file corrupted"],
        "unexpected or duplicate files": counts["unexpected file"]
        + counts["duplicate file"]
        + counts["deleted file back"]
        + counts["listing"],
        "quota violations": len(watch.violations if watch else [])
        + counts["quota exceeded at the end"],
        "usage drift": counts["usage drift"],
        "leaked objects and records": findings.leaked,
        "recorded objects removed by sweep_orphans": findings.recorded_objects_removed,
        "open files leaked by the replicas": sum(
            max(0, leak["files at end"] - leak["files at start"]) for leak in soak.leaks.values()
        ),
        "temporary files left by the replicas": sum(
            leak["temporary files"] for leak in soak.leaks.values()
        ),
    }


INFORMATIONAL = (
    "requests",
    "faults injected by the replicas",
    "injected 503s seen by clients",
    "expected client errors",
)
"""The headline figures that are no failure; each of the others has the target 0."""


def targets(soak: Soak) -> list[Target]:
    """At least one injected fault seen (else the run proved nothing); none of the failures;
    each replica's RSS levelling off after the first third of the load."""
    headline = figures(soak)
    seen = "injected 503s seen by clients"
    found = [Target(seen, headline[seen], 1, "", at_least=True)]
    found += [
        Target(name, value, 0, "", at_least=False)
        for name, value in headline.items()
        if name not in INFORMATIONAL
    ]
    for name, rss in soak.memory.items():
        growth = rss["end"] - rss["third"]
        found.append(
            Target(f"{name} RSS growth after 1/3", growth, MAX_LATE_GROWTH_MIB, " MiB", False)
        )
    return found


def print_summary(soak: Soak, found: Sequence[Target]) -> None:
    options = soak.options
    print(
        f"\n== soak: {soak.elapsed:.0f} s of load, {options.clients} clients, "
        f"{options.owners} owners, storage faults p={options.fault_probability}, "
        f"metadata faults p={options.metadata_fault_probability}, seed {options.seed}"
    )
    print(f"load average before {_load(soak.load_before)}, after {_load(soak.load_after)}\n")
    by_kind = soak.tally.by_kind()
    columns = sorted({outcome for outcomes in by_kind.values() for outcome in outcomes})
    rows = [[kind, *(str(o.get(c, "")) for c in columns)] for kind, o in by_kind.items()]
    print_table(["requests", *columns], rows)
    print()
    rows = [
        [section, name, str(count)]
        for section, counts in (
            ("expected client error", soak.tally.expected),
            ("failure during the load", soak.tally.failures),
            ("check after the load", soak.findings.counts),
            ("before sweep_orphans", soak.findings.before_orphan_sweep),
            ("after sweep_orphans", soak.findings.after_orphan_sweep),
            ("removed by sweep_orphans", {"objects": soak.findings.orphans_removed}),
        )
        for name, count in sorted(counts.items())
    ]
    print_table(["", "", "count"], rows)
    print()
    rows = [
        [
            name,
            f"{rss['start']:.0f}",
            f"{rss['third']:.0f}",
            f"{rss['end']:.0f}",
            f"{rss['peak']:.0f}",
        ]
        for name, rss in soak.memory.items()
    ]
    print_table(["RSS (MiB)", "start", "1/3", "end", "peak"], rows)
    print()
    columns = ["files at start", "files at end", "sockets at start", "sockets at end"]
    columns.append("temporary files")
    rows = [[name, *(str(leak[c]) for c in columns)] for name, leak in soak.leaks.items()]
    print_table(["open descriptors", *columns], rows)
    for name, backends in soak.faults.items():
        print(f"{name} injected: {json.dumps(backends, sort_keys=True)}")
    print()
    print_table(["target", "measured", "bound", ""], target_rows(found))
    examples = soak.tally.examples + soak.findings.examples
    if examples:
        print("\nexamples:\n  " + "\n  ".join(examples[:20]))


def _load(average: Sequence[float]) -> str:
    return " ".join(f"{value:.2f}" for value in average)


def save(soak: Soak, found: Sequence[Target]) -> Path:
    options, watch = soak.options, soak.watch
    document = {
        "benchmark": "soak",
        "date": soak.stamp.isoformat(timespec="seconds"),
        "quick": options.quick,
        "duration_s": options.duration,
        "elapsed_s": round(soak.elapsed, 1),
        "settings": {
            "clients": options.clients,
            "owners": options.owners,
            "replicas": REPLICAS,
            "storage_fault_probability": options.fault_probability,
            "metadata_fault_probability": options.metadata_fault_probability,
            "quota": {"max_files": options.max_files, "max_bytes": options.max_bytes},
            "s3_part_size": PART_SIZE,
            "seed": options.seed,
            "malloc": allocator_name(options),
        },
        "machine": machine(),
        "load_average": {"before": soak.load_before, "after": soak.load_after},
        "figures": figures(soak),
        "operations": soak.tally.by_kind(),
        "faults_injected": soak.faults,
        "expected_client_errors": dict(soak.tally.expected),
        "failures": dict(soak.tally.failures),
        "failure_examples": soak.tally.examples,
        "quota": {
            "samples": watch.samples if watch else 0,
            "violations": (watch.violations if watch else [])[:MAX_EXAMPLES],
            "highest": {
                owner: {"files": files, "bytes": size}
                for owner, (files, size) in sorted((watch.highest if watch else {}).items())
            },
        },
        "check_after_load": {
            "counts": dict(soak.findings.counts),
            "sweep": soak.findings.sweep,
            "before_orphan_sweep": soak.findings.before_orphan_sweep,
            "removed_by_sweep_orphans": soak.findings.orphans_removed,
            "after_orphan_sweep": soak.findings.after_orphan_sweep,
            "examples": soak.findings.examples,
        },
        "memory_mib": soak.memory,
        "descriptors_and_temporary_files": soak.leaks,
        "targets": [{**asdict(target), "passed": target.passed} for target in found],
        "passed": all(target.passed for target in found),
    }
    RESULTS_DIR.mkdir(exist_ok=True)
    path = RESULTS_DIR / f"{result_name(soak)}.json"
    path.write_text(json.dumps(document, indent=2) + "\n")
    return path


def main(argv: Sequence[str] | None = None) -> int:
    options = parse_args(argv)
    missing = s3_server_missing() or postgres_missing(options.postgres_url)
    if missing is not None:
        print(f"soak: cannot run: {missing}")
        return 2
    soak = run(options)
    found = targets(soak)
    print_summary(soak, found)
    print(f"\nresults: {save(soak, found)}")
    return 0 if all(target.passed for target in found) else 1


if __name__ == "__main__":
    sys.exit(main())
