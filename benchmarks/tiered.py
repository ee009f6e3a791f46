"""Hot tier benchmark: downloads through ``serve --cache-dir`` in front of S3, against the
first (cold) download of the same file and against a download from local disk.

Measured, side by side in one run, through uvicorn on loopback: throughput (MiB per second,
median of ``--repeat`` runs) of a ``--size`` MiB download (default 256 MiB) of

- **cold**: the first download of a file just uploaded to ours on moto's S3 server (started
  here) + PostgreSQL (``--metadata sqlite`` for SQLite), with a hot tier on local disk
  (``--cache-dir``, twice the file in size): it streams from S3 and fills the hot tier;
- **hot**: the second download of the same file, from the hot tier;
- **local**: the same download from ours on local disk + SQLite, no tier.

Each run uploads a fresh file to the S3 server (so its first download is cold), downloads it
cold, then hot and local in a rotating order, and deletes it (which empties the hot tier).
The local file sits in the page cache (one untimed download first), as the hot one does.

Targets: hot >= 0.9x local, hot >= 2x cold.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from collections.abc import Sequence
from contextlib import ExitStack
from pathlib import Path

from harness import MiB
from harness.clients import curl, expect, make_multipart_body, post_file, read_json
from harness.measure import rotated
from harness.report import Figure, Report, Target, median
from harness.results import add_results_option, run_script
from harness.servers import (
    Server,
    add_allocator_option,
    add_s3_rig_options,
    allocator,
    allocator_name,
    ours_on_s3,
    ours_server,
    s3_rig_unavailable,
)

MIN_HOT_VS_LOCAL = 0.9
MIN_HOT_VS_COLD = 2.0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.partition("\n")[0])
    parser.add_argument("--size", type=int, default=256, help="file size in MiB (256)")
    parser.add_argument("--repeat", type=int, default=5, help="runs (5)")
    add_s3_rig_options(parser, backends=False)
    add_allocator_option(parser)
    parser.add_argument("--quick", action="store_true", help="a smoke run: 16 MiB, 2 runs")
    add_results_option(parser)
    return parser


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    options = build_parser().parse_args(argv)
    if options.quick:
        options.size, options.repeat = 16, 2
    return options


unavailable = s3_rig_unavailable
"""Why this benchmark cannot run here (moto, or PostgreSQL), or None."""


def run(options: argparse.Namespace) -> Report:
    size = options.size * MiB
    settings = {"size_mib": options.size, "repeat": options.repeat, "metadata": options.metadata}
    report = Report("tiered", {**settings, "malloc": allocator_name(options)})
    with tempfile.TemporaryDirectory(prefix="openai-files-bench-") as temp, ExitStack() as stack:
        scratch = Path(temp)
        cache = ["--cache-dir", str(scratch / "cache"), "--cache-size", str(2 * size)]
        _, tiered = ours_on_s3(
            stack, scratch, options, label="tiered", max_file_size=2 * size, extra=cache
        )
        (scratch / "local").mkdir()
        local = stack.enter_context(
            ours_server(scratch / "local", max_file_size=2 * size, allocator=allocator(options))
        )
        body = scratch / "body"
        content_type = make_multipart_body(body, size)
        local_url = _upload(local, body, content_type, scratch)
        expect(curl(local_url), downloaded=size)
        speeds = _runs(tiered, local_url, body, content_type, scratch, size, options.repeat)
    for label, samples in speeds.items():
        report.figures.append(Figure(f"{label} download", median(samples), "MiB/s", samples))
    hot, cold, flat = (median(speeds[label]) for label in ("hot", "cold", "local"))
    report.targets += [
        Target("download hot / local", hot / flat, MIN_HOT_VS_LOCAL, "x", at_least=True),
        Target("download hot / cold", hot / cold, MIN_HOT_VS_COLD, "x", at_least=True),
    ]
    return report


def _upload(server: Server, body: Path, content_type: str, scratch: Path) -> str:
    """Upload ``body``; the content URL of the file."""
    response = scratch / "response.json"
    expect(post_file(f"{server.url}/v1/files", body, content_type, output=response))
    return f"{server.url}/v1/files/{read_json(response)['id']}/content"


def _runs(
    tiered: Server,
    local_url: str,
    body: Path,
    content_type: str,
    scratch: Path,
    size: int,
    repeat: int,
) -> dict[str, list[float]]:
    speeds: dict[str, list[float]] = {"cold": [], "hot": [], "local": []}
    for turn in range(repeat):
        url = _upload(tiered, body, content_type, scratch)
        speeds["cold"].append(size / MiB / expect(curl(url), downloaded=size).seconds)
        urls = {"hot": url, "local": local_url}
        for label in rotated(list(urls), turn):
            seconds = expect(curl(urls[label]), downloaded=size).seconds
            speeds[label].append(size / MiB / seconds)
        expect(curl(url.removesuffix("/content"), "-X", "DELETE"))
    return speeds


def main(argv: Sequence[str] | None = None) -> int:
    return run_script("tiered", parse_args(argv), unavailable, run)


if __name__ == "__main__":
    sys.exit(main())
