"""Run the benchmarks of both deployment shapes; print a summary with PASS/FAIL per target.

The embedded shape (local disk + SQLite): ``upload.py``, ``download.py``, ``encryption.py``
(whose re-wrap part starts a moto of its own), ``list_page.py``,
the large-file benchmarks ``uploads_api.py --backends local`` and ``ranged_reads.py
--backends local``, and ``small_requests.py`` with the embedded default, memory backends and
ogx (it needs wrk and a Python >= 3.12 for ogx). The replicated shape (S3 + PostgreSQL):
``s3_transfer.py`` and ``tiered.py`` against a moto S3 server that each starts itself,
``list_page.py --database postgresql`` against the PostgreSQL of ``--postgres-url``,
``uploads_api.py --backends s3`` and ``ranged_reads.py --backends s3``, each with a moto of
its own, and ``small_requests.py`` with local disk + PostgreSQL against memory backends. A
benchmark whose service or tool is missing stops the run before anything is measured, unless
``--skip-unavailable`` says to skip it (the reason is printed); ``--shape`` runs one shape only.

The results (figures, every sample, targets, settings and the machine) are written as JSON to
``benchmarks/results/bench-<time>.json`` (git-ignored), or with ``--results NAME`` to
``benchmarks/results/NAME.json``, to be committed and shown in the docs (refused from a tree
with uncommitted changes: `harness.results`). The exit status is 1 when a target is missed, 2
when a service is missing. ``--quick`` runs every benchmark at smoke-test sizes, whose figures
say nothing about performance: no target is judged, and the exit status is 0 unless something
broke. ``--glibc-defaults`` runs the servers with glibc's adaptive malloc thresholds (see
`harness.PINNED`). ``--pause SECONDS`` leaves the machine idle that long between two
benchmarks, so that one's cleanup (gigabytes or thousands of files deleted, their writeback)
is not measured in the next one's figures; on a filesystem without a journal,
`harness.disk.QUIET_MINUTES` (360 s) is what the next one's file creations need.

The order puts the download first: run right after the upload benchmark, whose cleanup
deletes gigabytes, its downloads once fell run after run to a third of their speed.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from types import ModuleType

import download
import encryption
import list_page
import ranged_reads
import s3_transfer
import small_requests
import tiered
import upload
import uploads_api
from harness.disk import warn_about_disk
from harness.report import UNJUDGED, Report, print_table, save, target_rows
from harness.results import CannotRecord, add_results_option, check_recordable, write_results
from harness.servers import add_allocator_option
from harness.stores import add_postgres_option

BUSY_LOAD = 0.5


@dataclass(frozen=True)
class Benchmark:
    """A benchmark module (with ``parse_args`` and ``run``), the deployment shape it measures,
    the arguments it always gets, and what says whether its services are there."""

    module: ModuleType
    shape: str
    arguments: tuple[str, ...] = ()
    check: Callable[[argparse.Namespace], str | None] | None = None

    @property
    def name(self) -> str:
        return " ".join([self.module.__name__, *self.arguments])

    def options(self, common: Sequence[str]) -> argparse.Namespace:
        options: argparse.Namespace = self.module.parse_args([*self.arguments, *common])
        return options

    def unavailable(self, options: argparse.Namespace) -> str | None:
        """Why the benchmark cannot run here (a replicated one needs its services), or None."""
        return None if self.check is None else self.check(options)


BENCHMARKS = (
    Benchmark(download, "embedded"),
    Benchmark(upload, "embedded"),
    Benchmark(encryption, "embedded", check=encryption.unavailable),
    Benchmark(list_page, "embedded"),
    Benchmark(s3_transfer, "replicated", check=s3_transfer.unavailable),
    Benchmark(tiered, "replicated", check=tiered.unavailable),
    Benchmark(list_page, "replicated", ("--database", "postgresql"), list_page.unavailable),
    Benchmark(uploads_api, "embedded", ("--backends", "local")),
    Benchmark(uploads_api, "replicated", ("--backends", "s3"), uploads_api.unavailable),
    Benchmark(ranged_reads, "embedded", ("--backends", "local")),
    Benchmark(ranged_reads, "replicated", ("--backends", "s3"), ranged_reads.unavailable),
    Benchmark(
        small_requests,
        "embedded",
        ("--only", "ours-default,ours-memory,ogx"),
        small_requests.unavailable,
    ),
    Benchmark(
        small_requests,
        "replicated",
        ("--only", "ours-memory,ours-postgres"),
        small_requests.unavailable,
    ),
)


def warn_if_busy() -> None:
    """Figures taken while something else runs on the machine are not worth much: say so."""
    load = os.getloadavg()[0]
    if load > BUSY_LOAD:
        print(f"warning: the load average is {load:.2f}; other work will skew the figures")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.partition("\n")[0])
    parser.add_argument("--quick", action="store_true", help="smoke-test sizes")
    parser.add_argument(
        "--shape",
        choices=("all", "embedded", "replicated"),
        default="all",
        help="run the benchmarks of one deployment shape only (all)",
    )
    parser.add_argument(
        "--skip-unavailable",
        action="store_true",
        help="skip a benchmark whose service or tool (moto, PostgreSQL, wrk, Python 3.12 for "
        "ogx) is missing, saying why, instead of stopping",
    )
    parser.add_argument(
        "--pause",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="seconds to leave the machine idle between two benchmarks (0)",
    )
    add_postgres_option(parser)
    add_allocator_option(parser)
    add_results_option(parser)
    return parser


def common_arguments(options: argparse.Namespace, benchmark: Benchmark) -> list[str]:
    """The options of this run that every benchmark (of its shape) takes too."""
    arguments = ["--quick"] if options.quick else []
    if options.glibc_defaults:
        arguments.append("--glibc-defaults")
    if benchmark.shape == "replicated":
        arguments += ["--postgres-url", options.postgres_url]
    return arguments


def main(argv: Sequence[str] | None = None) -> int:
    options = build_parser().parse_args(argv)
    try:
        check_recordable(options)
    except CannotRecord as exc:
        print(f"cannot record results: {exc}")
        return 3
    chosen = [b for b in BENCHMARKS if options.shape in ("all", b.shape)]
    planned: list[tuple[Benchmark, argparse.Namespace]] = []
    for benchmark in chosen:
        benchmark_options = benchmark.options(common_arguments(options, benchmark))
        missing = benchmark.unavailable(benchmark_options)
        if missing is None:
            planned.append((benchmark, benchmark_options))
        elif options.skip_unavailable:
            print(f"skipping {benchmark.name}: {missing}")
        else:
            print(f"cannot run {benchmark.name}: {missing}")
            print("(--skip-unavailable skips it, --shape embedded runs the embedded shape only)")
            return 2
    if not planned:
        print("no benchmark to run")
        return 0
    warn_if_busy()
    warn_about_disk()
    started = time.monotonic()
    reports: list[Report] = []
    judged = not options.quick
    for index, (benchmark, benchmark_options) in enumerate(planned):
        if index and options.pause > 0:
            print(f"\npausing {options.pause:g} s before {benchmark.name}", flush=True)
            time.sleep(options.pause)
        report = benchmark.module.run(benchmark_options)
        report.print(judged=judged)
        reports.append(report)
    print(f"\n== summary ({time.monotonic() - started:.0f} s{', quick' if options.quick else ''})")
    print_table(
        ["target", "measured", "bound", ""],
        target_rows((target for report in reports for target in report.targets), judged=judged),
    )
    if not judged:
        print(UNJUDGED)
    if options.results is not None:
        command = ["benchmarks/run_all.py", *(sys.argv[1:] if argv is None else argv)]
        print(f"\nresults: {write_results(options.results, reports, command)}")
    else:
        print(f"\nresults: {save(reports, quick=options.quick)}")
    if not judged:
        return 0
    return 0 if all(report.passed for report in reports) else 1


if __name__ == "__main__":
    sys.exit(main())
