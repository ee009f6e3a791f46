"""Upload benchmark: ``POST /v1/files`` of one large file, against two plain Starlette endpoints.

Measured, side by side in one run, through uvicorn on loopback:

- throughput (MiB of file per second, median of ``--repeat`` runs) of a ``--size`` MiB upload
  (default 256 MiB) to ours, to ``bare`` (``request.stream()`` written to disk, no parsing), to
  ``naive`` (``await request.form()``, then the ``UploadFile`` copied to disk) and, for
  context, to ``bare-checked`` (``bare`` that also computes the SHA-256 of the bytes and
  flushes the file and its directory before answering, as ours does). All receive the same
  pre-built multipart body, streamed from disk by curl. Runs alternate between
  the servers, in a rotating order, and the disk is synced before each one.
- peak memory growth of each server during a ``--memory-size`` MiB upload (default 1 GiB):
  the RSS high-water mark (VmHWM, reset just before) minus the RSS before the upload.
- for context, what each upload cost the server process: CPU seconds (user + system, all
  threads) and minor page faults, from ``/proc/<pid>/stat``.

Each contender runs in a uvicorn process of its own, all with the same fixed glibc malloc
thresholds (`harness.PINNED`; ``--glibc-defaults`` drops them). With glibc's adaptive defaults a
process's speed depends on what it served before: the bare endpoint, alone in its process, took
about 164,000 page faults per 256 MiB upload (its 256 KiB buffers each got fresh pages) and ran at
half the speed it reached in a process that had also served the naive endpoint.
The memory upload runs before the throughput runs, while the heaps are still small.

Targets: ours >= 0.9x bare, ours >= 1.7x naive, ours' memory growth <= 32 MiB. Shown, not
judged: ours against ``bare-checked``.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from collections.abc import Callable, Mapping, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness import MiB
from harness.clients import curl, expect, make_multipart_body, post_file, read_json
from harness.measure import (
    ProcessCounters,
    peak_rss_bytes,
    reset_peak_rss,
    rotated,
    rss_bytes,
    settle_disk,
)
from harness.report import Figure, Report, Target, median
from harness.results import add_results_option, run_and_finish
from harness.servers import (
    Server,
    add_allocator_option,
    allocator,
    allocator_name,
    baseline_server,
    ours_server,
)

MIN_VS_BARE = 0.9
MIN_VS_NAIVE = 1.7
MAX_MEMORY_GROWTH_MIB = 32


@dataclass(frozen=True)
class UploadRun:
    """One upload: seconds as curl saw them, and what it cost the server process."""

    seconds: float
    server: ProcessCounters


@dataclass(frozen=True)
class Endpoint:
    """Where one contender takes uploads, and how to remove what an upload stored."""

    label: str
    server: Server
    path: str
    discard: Callable[[dict[str, Any]], None]

    @property
    def url(self) -> str:
        return self.server.url + self.path


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.partition("\n")[0])
    parser.add_argument("--size", type=int, default=256, help="upload size in MiB (256)")
    parser.add_argument("--memory-size", type=int, default=1024, help="in MiB (1024)")
    parser.add_argument("--repeat", type=int, default=7, help="runs per server (7)")
    add_allocator_option(parser)
    parser.add_argument("--quick", action="store_true", help="a smoke run: 16 MiB, 64 MiB, 2")
    add_results_option(parser)
    return parser


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    options = build_parser().parse_args(argv)
    if options.quick:
        options.size, options.memory_size, options.repeat = 16, 64, 2
    return options


def run(options: argparse.Namespace) -> Report:
    size, memory_size = options.size * MiB, options.memory_size * MiB
    settings = {"size_mib": options.size, "memory_size_mib": options.memory_size}
    settings |= {"repeat": options.repeat, "malloc": allocator_name(options)}
    report = Report("upload", settings)
    with tempfile.TemporaryDirectory(prefix="openai-files-bench-") as temp, ExitStack() as stack:
        scratch = Path(temp)
        limit = 2 * max(size, memory_size)
        endpoints = _start_endpoints(stack, scratch, limit, allocator(options))
        _warm_up(endpoints, scratch)
        body = scratch / "body"
        # Memory first, while the servers' heaps hold nothing but the warm-up's leftovers.
        content_type = make_multipart_body(body, memory_size)
        growth = {e.label: _memory_growth(e, body, content_type, scratch) for e in endpoints}
        content_type = make_multipart_body(body, size)
        runs = _runs(endpoints, body, content_type, options.repeat, scratch)
    speeds = {label: [size / MiB / run.seconds for run in done] for label, done in runs.items()}
    report.figures += _figures(speeds, runs, growth)
    ours, bare, naive = (median(speeds[label]) for label in ("ours", "bare", "naive"))
    checked = median(speeds["bare-checked"])
    report.figures.append(Figure("upload ours / bare-checked", ours / checked, "x"))
    report.targets += [
        Target("upload ours / bare", ours / bare, MIN_VS_BARE, "x", at_least=True),
        Target("upload ours / naive", ours / naive, MIN_VS_NAIVE, "x", at_least=True),
        Target(
            "upload memory growth",
            growth["ours"] / MiB,
            MAX_MEMORY_GROWTH_MIB,
            " MiB",
            at_least=False,
        ),
    ]
    return report


def _figures(
    speeds: dict[str, list[float]], runs: dict[str, list[UploadRun]], growth: dict[str, int]
) -> list[Figure]:
    """Throughput, then what each upload cost the server: CPU, page faults, peak memory."""
    figures = [
        Figure(f"{label} upload", median(done), "MiB/s", done) for label, done in speeds.items()
    ]
    for label, done in runs.items():
        cpu = [run.server.cpu_seconds for run in done]
        faults = [float(run.server.minor_faults) for run in done]
        figures.append(Figure(f"{label} server CPU per upload", median(cpu), "s", cpu))
        figures.append(Figure(f"{label} page faults per upload", median(faults), "", faults))
    for label, grown in growth.items():
        figures.append(Figure(f"{label} memory growth", grown / MiB, "MiB"))
    return figures


def _start_endpoints(
    stack: ExitStack, scratch: Path, max_file_size: int, malloc: Mapping[str, str]
) -> list[Endpoint]:
    """Each contender in a process of its own (see the module docstring)."""
    for name in ("ours", "bare", "naive", "bare-checked"):
        (scratch / name).mkdir()
    ours = ours_server(scratch / "ours", max_file_size=max_file_size, allocator=malloc)
    ours = stack.enter_context(ours)
    bare = stack.enter_context(baseline_server(scratch / "bare", allocator=malloc))
    naive = stack.enter_context(baseline_server(scratch / "naive", allocator=malloc))
    checked = stack.enter_context(baseline_server(scratch / "bare-checked", allocator=malloc))

    def delete_file(response: dict[str, Any]) -> None:
        expect(curl(f"{ours.url}/v1/files/{response['id']}", "-X", "DELETE"))

    def remover(root: Path) -> Callable[[dict[str, Any]], None]:
        return lambda response: (root / response["path"]).unlink()

    return [
        Endpoint("ours", ours, "/v1/files", delete_file),
        Endpoint("bare", bare, "/bare", remover(scratch / "bare")),
        Endpoint("naive", naive, "/naive", remover(scratch / "naive")),
        Endpoint("bare-checked", checked, "/bare-checked", remover(scratch / "bare-checked")),
    ]


def _warm_up(endpoints: Sequence[Endpoint], scratch: Path) -> None:
    """One small upload each: imports, the database schema and first connections are done."""
    body = scratch / "warm-up"
    content_type = make_multipart_body(body, MiB)
    for endpoint in endpoints:
        _upload(endpoint, body, content_type, scratch)


def _runs(
    endpoints: Sequence[Endpoint], body: Path, content_type: str, repeat: int, scratch: Path
) -> dict[str, list[UploadRun]]:
    """``repeat`` uploads to each endpoint; the order of the endpoints rotates between rounds."""
    runs: dict[str, list[UploadRun]] = {endpoint.label: [] for endpoint in endpoints}
    for turn in range(repeat):
        for endpoint in rotated(endpoints, turn):
            settle_disk()
            runs[endpoint.label].append(_upload(endpoint, body, content_type, scratch))
    return runs


def _memory_growth(endpoint: Endpoint, body: Path, content_type: str, scratch: Path) -> int:
    """Bytes by which the server's peak RSS during one upload exceeds its RSS before it."""
    pid = endpoint.server.pid
    settle_disk()
    before = rss_bytes(pid)
    if not reset_peak_rss(pid):
        print(f"warning: cannot reset VmHWM of {pid}; the peak may predate the upload")
    _upload(endpoint, body, content_type, scratch)
    return peak_rss_bytes(pid) - before


def _upload(endpoint: Endpoint, body: Path, content_type: str, scratch: Path) -> UploadRun:
    """One upload, timed by curl; what it stored is removed afterwards."""
    response = scratch / "response.json"
    before = ProcessCounters.of(endpoint.server.pid)
    transfer = expect(post_file(endpoint.url, body, content_type, output=response))
    spent = ProcessCounters.of(endpoint.server.pid) - before
    endpoint.discard(read_json(response))
    return UploadRun(transfer.seconds, spent)


def main(argv: Sequence[str] | None = None) -> int:
    return run_and_finish(run, parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
