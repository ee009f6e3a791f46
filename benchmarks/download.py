"""Download benchmark: ``GET /v1/files/{id}/content`` of one large file, against two baselines.

Measured, side by side in one run, through uvicorn on loopback: throughput (MiB per second,
median of ``--repeat`` runs) of a ``--size`` MiB download (default 256 MiB) from ours (local
disk storage), from Starlette's ``FileResponse``, and from a bare endpoint that streams 1 MiB
blocks read in a worker thread, each in a uvicorn process of its own. The same bytes sit in the
page cache for every server (one untimed download each first), curl writes them to /dev/null,
and runs alternate between the servers in a rotating order.

Target: ours >= 0.9x the faster baseline.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from collections.abc import Mapping, Sequence
from contextlib import ExitStack
from pathlib import Path

from harness import MiB
from harness.clients import curl, expect, make_file, read_json
from harness.measure import rotated
from harness.report import Figure, Report, Target, median
from harness.results import add_results_option, run_and_finish
from harness.servers import (
    add_allocator_option,
    allocator,
    allocator_name,
    baseline_server,
    ours_server,
)

MIN_VS_BEST_BASELINE = 0.9


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.partition("\n")[0])
    parser.add_argument("--size", type=int, default=256, help="download size in MiB (256)")
    parser.add_argument("--repeat", type=int, default=7, help="runs per server (7)")
    add_allocator_option(parser)
    parser.add_argument("--quick", action="store_true", help="a smoke run: 16 MiB, 2 runs")
    add_results_option(parser)
    return parser


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    options = build_parser().parse_args(argv)
    if options.quick:
        options.size, options.repeat = 16, 2
    return options


def run(options: argparse.Namespace) -> Report:
    size = options.size * MiB
    settings = {"size_mib": options.size, "repeat": options.repeat}
    report = Report("download", {**settings, "malloc": allocator_name(options)})
    with tempfile.TemporaryDirectory(prefix="openai-files-bench-") as temp, ExitStack() as stack:
        urls = _serve_one_file(stack, Path(temp), size, allocator(options))
        for url in urls.values():
            expect(curl(url), downloaded=size)
        speeds = _throughput(urls, size, options.repeat)
    for label, samples in speeds.items():
        report.figures.append(Figure(f"{label} download", median(samples), "MiB/s", samples))
    ours = median(speeds["ours"])
    best = max(median(samples) for label, samples in speeds.items() if label != "ours")
    report.targets.append(
        Target(
            "download ours / best baseline", ours / best, MIN_VS_BEST_BASELINE, "x", at_least=True
        )
    )
    return report


def _serve_one_file(
    stack: ExitStack, scratch: Path, size: int, malloc: Mapping[str, str]
) -> dict[str, str]:
    """Start each contender in a process of its own, all serving the same file; return the
    download URL of each."""
    source = make_file(scratch / "data.bin", size)
    urls = {"ours": _upload_to_ours(stack, scratch / "ours", source, malloc)}
    for label, route in (("FileResponse", "file-response"), ("thread blocks", "thread-blocks")):
        root = scratch / route
        root.mkdir()
        (root / source.name).hardlink_to(source)
        server = stack.enter_context(baseline_server(root, allocator=malloc))
        urls[label] = f"{server.url}/{route}/{source.name}"
    return urls


def _upload_to_ours(
    stack: ExitStack, data_dir: Path, source: Path, malloc: Mapping[str, str]
) -> str:
    """Start ours, upload ``source`` to it and return the file's content URL."""
    data_dir.mkdir()
    limit = 2 * source.stat().st_size
    ours = stack.enter_context(ours_server(data_dir, max_file_size=limit, allocator=malloc))
    response = data_dir.with_suffix(".json")
    form = ["-F", "purpose=assistants", "-F", f"file=@{source}"]
    expect(curl(f"{ours.url}/v1/files", *form, output=response))
    return f"{ours.url}/v1/files/{read_json(response)['id']}/content"


def _throughput(urls: dict[str, str], size: int, repeat: int) -> dict[str, list[float]]:
    """MiB/s of each run, by contender; the order of the contenders rotates from run to run."""
    speeds: dict[str, list[float]] = {label: [] for label in urls}
    for turn in range(repeat):
        for label in rotated(list(urls), turn):
            transfer = expect(curl(urls[label]), downloaded=size)
            speeds[label].append(size / MiB / transfer.seconds)
    return speeds


def main(argv: Sequence[str] | None = None) -> int:
    return run_and_finish(run, parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
