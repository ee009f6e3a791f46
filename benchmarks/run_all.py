"""Run the upload, download and list benchmarks; print a summary with PASS/FAIL per target.

The results (figures, every sample, targets, settings and the machine) are written as JSON to
``benchmarks/results/``. The exit status is 1 when a target is missed. ``--quick`` runs every
benchmark at smoke-test sizes, whose figures say nothing about performance; ``--glibc-defaults``
runs the servers with glibc's adaptive malloc thresholds (see `harness.PINNED`).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Sequence

import download
import list_page
import upload
from harness import add_allocator_option
from report import Report, print_table, save, target_rows

BENCHMARKS = (upload, download, list_page)
BUSY_LOAD = 0.5


def warn_if_busy() -> None:
    """Figures taken while something else runs on the machine are not worth much: say so."""
    load = os.getloadavg()[0]
    if load > BUSY_LOAD:
        print(f"warning: the load average is {load:.2f}; other work will skew the figures")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.partition("\n")[0])
    parser.add_argument("--quick", action="store_true", help="smoke-test sizes")
    add_allocator_option(parser)
    # Every benchmark takes these options too: hand them on as they came.
    forwarded = list(sys.argv[1:] if argv is None else argv)
    quick = parser.parse_args(forwarded).quick
    warn_if_busy()
    started = time.monotonic()
    reports: list[Report] = []
    for benchmark in BENCHMARKS:
        report = benchmark.run(benchmark.parse_args(forwarded))
        report.print()
        reports.append(report)
    print(f"\n== summary ({time.monotonic() - started:.0f} s{', quick' if quick else ''})")
    print_table(
        ["target", "measured", "bound", ""],
        target_rows(target for report in reports for target in report.targets),
    )
    print(f"\nresults: {save(reports, quick=quick)}")
    return 0 if all(report.passed for report in reports) else 1


if __name__ == "__main__":
    sys.exit(main())
