"""Ranged reads benchmark: 1 MiB ranges at random offsets of a 1 GiB file, against FileResponse.

Measured, side by side in one run, through uvicorn on loopback: requests per second of
``GET`` with ``Range: bytes=a-b`` (``--range-kib`` KiB, default 1 MiB, at offsets drawn from a
random generator seeded with ``--seed``, the same list for every contender) of one
``--size`` MiB file (default 1 GiB), served by

- **FileResponse**: Starlette's ``FileResponse``, which answers ranges itself, on a local file
  (``baselines.py``, ``GET /file-response/{name}``);
- **ours local**: ``GET /v1/files/{id}/content`` of ``openai-files serve`` on local disk +
  SQLite;
- **ours s3**: the same on moto's S3 server (started here on a free loopback port) +
  PostgreSQL (``--metadata sqlite`` for SQLite): every request is a ranged GET to S3;
- **moto direct**, for context: the same ranged GETs sent by curl straight to moto, the floor
  under ours s3.

The client is curl: ``--clients`` processes (default 1), each sending its share of the
requests of a run one after the other over one kept-alive connection; the rate is the number of
requests over the wall time from the first curl's start to the last one's exit, the median of
``--repeat`` runs, which alternate between the contenders in a rotating order. The local
contenders get the same ``--requests`` ranges in every run. The two S3 contenders, a hundred
times slower (see below), share ``--s3-requests`` ranges in all between their runs: the same
ranges for both within a run, the next ones in the next run. Every response must be a 206 with
the requested ``Content-Range`` and length, and one response in 25 is compared byte for byte
with the source. The local files sit in the page cache (each is read once, whole, first).

No target: the figures say what a range costs through each path. moto answers a ranged GET by
reading the whole object and slicing it (about a second per request for 1 GiB), so ours s3
says more about moto than about S3; its ratio to moto direct is what our server adds.
"""

from __future__ import annotations

import argparse
import os
import random
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

from harness import MiB
from harness.clients import CURL, curl, expect, read_json
from harness.measure import rotated
from harness.report import Figure, Report, median
from harness.results import add_results_option, run_script
from harness.servers import (
    BENCH_BUCKET,
    OURS_PREFIX,
    add_allocator_option,
    add_s3_rig_options,
    allocator,
    allocator_name,
    baseline_server,
    ours_on_s3,
    ours_server,
    parse_backends,
    s3_rig_unavailable,
)
from harness.stores import s3_objects

FILE_RESPONSE = "FileResponse"
CHECK_EVERY = 25
WRITE_OUT = "%{http_code} %{size_download} %{time_total} %header{content-range}\\n"


@dataclass(frozen=True)
class Contender:
    """Where one contender serves the file, how many requests it gets per run, and whether
    each run takes the next ranges of the list (``spread``) or the first ones again."""

    label: str
    url: str
    requests: int
    spread: bool = False

    def ranges(self, starts: Sequence[int], turn: int) -> Sequence[int]:
        first = turn * self.requests if self.spread else 0
        return starts[first : first + self.requests]


@dataclass(frozen=True)
class Batch:
    """One run of a contender: requests per second, and the latency of each request."""

    rate: float
    latencies: list[float]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.partition("\n")[0])
    parser.add_argument("--size", type=int, default=1024, help="file size in MiB (1024)")
    parser.add_argument("--range-kib", type=int, default=1024, help="range size in KiB (1024)")
    parser.add_argument("--requests", type=int, default=500, help="per local contender (500)")
    parser.add_argument(
        "--s3-requests",
        type=int,
        default=300,
        help="per S3 contender, in all, spread over the runs (300)",
    )
    parser.add_argument("--repeat", type=int, default=3, help="runs per contender (3)")
    parser.add_argument(
        "--clients", type=int, default=1, help="concurrent curl processes (connections) (1)"
    )
    parser.add_argument("--seed", type=int, default=20261122, help="of the offsets (20261122)")
    add_s3_rig_options(parser, backends=True)
    add_allocator_option(parser)
    parser.add_argument(
        "--quick", action="store_true", help="a smoke run: 32 MiB, 60 and 30 requests, 1 run"
    )
    add_results_option(parser)
    return parser


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = build_parser()
    options = parser.parse_args(argv)
    if options.quick:
        options.size, options.requests, options.s3_requests, options.repeat = 32, 60, 30, 1
    parse_backends(parser, options)
    if not 0 < options.range_kib * 1024 <= options.size * MiB:
        parser.error("--range-kib must be positive and at most the file's size")
    if options.clients < 1:
        parser.error("--clients must be at least 1")
    return options


unavailable = s3_rig_unavailable
"""Why this benchmark cannot run here (S3 needs moto, PostgreSQL its server), or None."""


def offsets(seed: int, count: int, size: int, length: int) -> list[int]:
    """``count`` start offsets of ``length``-byte ranges inside ``size`` bytes, from ``seed``."""
    generator = random.Random(seed)
    return [generator.randrange(size - length + 1) for _ in range(count)]


def _random_file(path: Path, size: int) -> Path:
    """A file of ``size`` random bytes in which no MiB repeats another, so that bytes read at
    the wrong offset cannot match the source by chance."""
    with path.open("wb") as handle:
        for offset in range(0, size, MiB):
            handle.write(os.urandom(min(MiB, size - offset)))
    return path


def run(options: argparse.Namespace) -> Report:
    size, length = options.size * MiB, options.range_kib * 1024
    settings = {"size_mib": options.size, "range_kib": options.range_kib}
    settings |= {"requests": options.requests, "repeat": options.repeat}
    if "s3" in options.backends:
        settings |= {"s3_requests": options.s3_requests, "s3_metadata": options.metadata}
    settings |= {"clients": options.clients, "seed": options.seed}
    settings |= {"backends": ",".join(options.backends), "malloc": allocator_name(options)}
    report = Report("ranged reads", settings)
    s3_per_run = -(-options.s3_requests // options.repeat)
    count = max(options.requests, s3_per_run * options.repeat)
    starts = offsets(options.seed, count, size, length)
    with tempfile.TemporaryDirectory(prefix="openai-files-bench-") as temp, ExitStack() as stack:
        scratch = Path(temp)
        try:
            source = _random_file(scratch / "data.bin", size)
            contenders = _start(stack, scratch, source, options)
            _warm_up(contenders, scratch, source, length)
            batches: dict[str, list[Batch]] = {contender.label: [] for contender in contenders}
            for turn in range(options.repeat):
                for contender in rotated(contenders, turn):
                    ranges = contender.ranges(starts, turn)
                    batch = _batch(contender, ranges, length, scratch, source, options.clients)
                    batches[contender.label].append(batch)
        except BaseException:
            print_logs(scratch)
            raise
    rates = {label: [batch.rate for batch in done] for label, done in batches.items()}
    baseline = median(rates[FILE_RESPONSE])
    for label, samples in rates.items():
        report.figures.append(Figure(f"{label} ranged reads", median(samples), "req/s", samples))
    for label, done in batches.items():
        latencies = [latency * 1000 for batch in done for latency in batch.latencies]
        report.figures.append(Figure(f"{label} median latency", median(latencies), "ms"))
    for label, samples in rates.items():
        if label != FILE_RESPONSE:
            ratio = median(samples) / baseline
            report.figures.append(Figure(f"{label} / {FILE_RESPONSE}", ratio, "x"))
    if "ours s3" in rates and "moto direct" in rates:
        ratio = median(rates["ours s3"]) / median(rates["moto direct"])
        report.figures.append(Figure("ours s3 / moto direct", ratio, "x"))
    return report


def print_logs(scratch: Path) -> None:
    """The end of every server log under ``scratch``: what a failed run leaves to go on."""
    for log in sorted(scratch.rglob("*.log")):
        print(f"-- {log.relative_to(scratch)}:\n{log.read_text(errors='replace')[-3000:]}")


def _start(
    stack: ExitStack, scratch: Path, source: Path, options: argparse.Namespace
) -> list[Contender]:
    """Every contender serving ``source``, each in a process of its own."""
    malloc: Mapping[str, str] = allocator(options)
    size = source.stat().st_size
    s3_per_run = -(-options.s3_requests // options.repeat)
    root = scratch / "file-response"
    root.mkdir()
    (root / source.name).hardlink_to(source)
    baseline = stack.enter_context(baseline_server(root, allocator=malloc))
    url = f"{baseline.url}/file-response/{source.name}"
    contenders = [Contender(FILE_RESPONSE, url, options.requests)]
    if "local" in options.backends:
        data_dir = scratch / "ours-local"
        data_dir.mkdir()
        ours = stack.enter_context(ours_server(data_dir, max_file_size=2 * size, allocator=malloc))
        url = _upload(ours.url, source, data_dir.with_suffix(".json"))
        contenders.append(Contender("ours local", url, options.requests))
    if "s3" in options.backends:
        moto, ours = ours_on_s3(stack, scratch, options, label="ranges", max_file_size=2 * size)
        data_dir = scratch / "ours-s3"
        url = _upload(ours.url, source, data_dir.with_suffix(".json"))
        contenders.append(Contender("ours s3", url, s3_per_run, spread=True))
        ((name, stored),) = s3_objects(moto.url, BENCH_BUCKET, f"{OURS_PREFIX}/").items()
        if stored != size:
            raise RuntimeError(f"{name} holds {stored} bytes, not {size}")
        contenders.append(
            Contender("moto direct", f"{moto.url}/{BENCH_BUCKET}/{name}", s3_per_run, spread=True)
        )
    return contenders


def _upload(server: str, source: Path, response: Path) -> str:
    """Upload ``source`` to our server at ``server``; the file's content URL."""
    form = ["-F", "purpose=assistants", "-F", f"file=@{source}"]
    expect(curl(f"{server}/v1/files", *form, output=response))
    return f"{server}/v1/files/{read_json(response)['id']}/content"


def _warm_up(contenders: Sequence[Contender], scratch: Path, source: Path, length: int) -> None:
    """The local files read once whole (into the page cache), and a few ranges from each."""
    size = source.stat().st_size
    for contender in contenders:
        if contender.label in (FILE_RESPONSE, "ours local"):
            expect(curl(contender.url), downloaded=size)
        _batch(contender, offsets(1, 4, size, length), length, scratch, source, clients=1)


def _batch(
    contender: Contender,
    starts: Sequence[int],
    length: int,
    scratch: Path,
    source: Path,
    clients: int,
) -> Batch:
    """The ranges at ``starts`` requested from ``contender`` by ``clients`` curl processes at
    once, each over one connection; every answer checked, some byte for byte."""
    size = source.stat().st_size
    shares = [list(range(client, len(starts), clients)) for client in range(clients)]
    configs = []
    for client, share in enumerate(shares):
        sections = []
        for index in share:
            start = starts[index]
            kept = scratch / f"range-{index}.bin" if index % CHECK_EVERY == 0 else os.devnull
            sections.append(
                f'url = "{contender.url}"\n'
                f'header = "Range: bytes={start}-{start + length - 1}"\n'
                f'output = "{kept}"\n'
                f'write-out = "{WRITE_OUT}"'
            )
        config = scratch / f"client-{client}.curlrc"
        config.write_text("\nnext\n".join(sections) + "\n")
        configs.append(config)
    started = time.perf_counter()
    processes = [
        subprocess.Popen([CURL, "-sS", "--config", str(config)], stdout=subprocess.PIPE, text=True)
        for config in configs
    ]
    outputs = [process.communicate()[0] for process in processes]
    seconds = time.perf_counter() - started
    for process in processes:
        if process.returncode != 0:
            raise RuntimeError(f"curl failed ({process.returncode}) on {contender.label}")
    latencies = []
    for share, answers in zip(shares, outputs, strict=True):
        lines = answers.splitlines()
        if len(lines) != len(share):
            raise RuntimeError(f"{contender.label}: {len(lines)} answers to {len(share)} requests")
        for index, line in zip(share, lines, strict=True):
            start = starts[index]
            status, received, latency, content_range = line.split(maxsplit=3)
            expected = f"bytes {start}-{start + length - 1}/{size}"
            if (int(status), int(received), content_range) != (206, length, expected):
                raise RuntimeError(f"{contender.label}: {line!r} for {expected}")
            latencies.append(float(latency))
    _compare(contender.label, starts, length, scratch, source)
    return Batch(len(starts) / seconds, latencies)


def _compare(label: str, starts: Sequence[int], length: int, scratch: Path, source: Path) -> None:
    """The responses kept (one in `CHECK_EVERY`) against the source's bytes."""
    with source.open("rb") as handle:
        for index in range(0, len(starts), CHECK_EVERY):
            received = scratch / f"range-{index}.bin"
            handle.seek(starts[index])
            if received.read_bytes() != handle.read(length):
                raise RuntimeError(f"{label}: the range at {starts[index]} differs from the source")
            received.unlink()


def main(argv: Sequence[str] | None = None) -> int:
    return run_script("ranged_reads", parse_args(argv), unavailable, run)


if __name__ == "__main__":
    sys.exit(main())
