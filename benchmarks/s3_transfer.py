"""S3 transfer benchmark: uploads and downloads through ours on S3, against obstore alone.

The replicated shape: ``openai-files serve --storage s3://... --metadata postgresql+asyncpg://...``
(``--metadata sqlite`` for SQLite) in front of moto's S3 server, which this script starts on a
free loopback port in a temporary directory and stops at the end. Measured, side by side in one
run, against the same moto process:

- upload throughput (MiB of file per second, median of ``--repeat`` runs) of a ``--size`` MiB
  file (default 256 MiB): ours receiving ``POST /v1/files`` from curl (the multipart body
  streamed from disk) and streaming the file to S3 as a multipart upload, against obstore
  putting the same bytes straight to the same server, with the same part size and the same
  number of parts in flight (``--parts-in-flight``, 2 as `S3Storage`'s default;
  ``s3_baseline.py``: a process of its own per transfer, which times itself from its first
  request to its last byte).
- download throughput of the same object: ours serving ``GET /v1/files/{id}/content`` by
  streaming it from S3 through the server (no presigned redirect), curl writing to /dev/null,
  against obstore's own streaming get of the object in a process of its own, chunks discarded.
- peak memory growth of our server during a ``--memory-size`` MiB upload (default 1 GiB):
  its VmHWM (reset just before) minus its RSS before.
- for context, what each transfer cost in CPU seconds: our server or the obstore process, and
  moto; our server's RSS after the warm-up; and moto's memory, measured on its own process: it
  holds every object in memory, and more while it assembles a multipart upload.

moto, a Python server, is the slowest part of both paths and shares the machine's cores with
the contenders: the ratios say what our server adds to an S3 client, not what S3 costs.
Runs alternate between the contenders in a rotating order; what a run stored is deleted after
it, so that moto holds at most a few objects.

Targets: upload ours >= 0.8x obstore, download ours >= 0.8x obstore, memory growth <= 64 MiB.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Callable, Mapping, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

from harness import BENCHMARKS_DIR, MiB
from harness.clients import curl, expect, make_file, make_multipart_body, post_file, read_json
from harness.measure import ProcessCounters, peak_rss_bytes, reset_peak_rss, rotated, rss_bytes
from harness.report import Figure, Report, Target, median
from harness.results import add_results_option, run_script
from harness.servers import (
    BENCH_BUCKET,
    OURS_PREFIX,
    Server,
    add_allocator_option,
    add_s3_rig_options,
    allocator,
    allocator_name,
    ours_on_s3,
    s3_rig_unavailable,
)
from harness.stores import S3_CREDENTIALS, s3_objects

MIN_UPLOAD_VS_OBSTORE = 0.8
MIN_DOWNLOAD_VS_OBSTORE = 0.8
MAX_MEMORY_GROWTH_MIB = 64
OBSTORE_OBJECT = "obstore/object"


@dataclass(frozen=True)
class Run:
    """One transfer: its seconds, and the CPU seconds it cost the process that moved the bytes
    (our server, or the obstore process) and moto."""

    seconds: float
    mover_cpu: float
    moto_cpu: float


@dataclass(frozen=True)
class Rig:
    """moto with its bucket, our server in front of it, and what the obstore process needs."""

    moto: Server
    ours: Server
    scratch: Path
    part_size: int
    parts_in_flight: int
    malloc: Mapping[str, str]

    def obstore(self, operation: str, name: str, *args: str) -> dict[str, float]:
        """Run ``s3_baseline.py`` on an object of the bucket; its JSON answer."""
        argv = [sys.executable, str(BENCHMARKS_DIR / "s3_baseline.py"), operation, self.moto.url]
        argv += [BENCH_BUCKET, name, *args, "--part-size", str(self.part_size)]
        argv += ["--parts-in-flight", str(self.parts_in_flight)]
        env = {**os.environ, **self.malloc, **S3_CREDENTIALS}
        completed = subprocess.run(argv, capture_output=True, text=True, check=True, env=env)
        answer: dict[str, float] = json.loads(completed.stdout)
        return answer


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.partition("\n")[0])
    parser.add_argument("--size", type=int, default=256, help="transfer size in MiB (256)")
    parser.add_argument("--memory-size", type=int, default=1024, help="in MiB (1024)")
    parser.add_argument("--repeat", type=int, default=7, help="runs per contender (7)")
    parser.add_argument("--part-size", type=int, default=8, help="S3 part size in MiB (8)")
    parser.add_argument(
        "--parts-in-flight", type=int, default=2, help="parts of a put sent at once, both sides (2)"
    )
    add_s3_rig_options(parser, backends=False)
    add_allocator_option(parser)
    parser.add_argument("--quick", action="store_true", help="a smoke run: 16 MiB, 64 MiB, 2")
    add_results_option(parser)
    return parser


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    options = build_parser().parse_args(argv)
    if options.quick:
        options.size, options.memory_size, options.repeat = 16, 64, 2
    return options


unavailable = s3_rig_unavailable
"""Why this benchmark cannot run here, or None."""


def run(options: argparse.Namespace) -> Report:
    size, memory_size = options.size * MiB, options.memory_size * MiB
    settings = {"size_mib": options.size, "memory_size_mib": options.memory_size}
    settings |= {"repeat": options.repeat, "part_size_mib": options.part_size}
    settings |= {"parts_in_flight": options.parts_in_flight}
    settings |= {"metadata": options.metadata, "malloc": allocator_name(options)}
    report = Report("s3 transfer", settings)
    with tempfile.TemporaryDirectory(prefix="openai-files-bench-") as temp, ExitStack() as stack:
        rig = _start(stack, Path(temp), options, max_file_size=2 * max(size, memory_size))
        _warm_up(rig)
        ours_rss = rss_bytes(rig.ours.pid)
        growth = _memory_growth(rig, memory_size)  # first, while the heaps are small
        uploads, downloads = _transfers(
            rig, make_file(rig.scratch / "data.bin", size), options.repeat
        )
        moto_rss = rss_bytes(rig.moto.pid)
    up = {label: [size / MiB / run.seconds for run in runs] for label, runs in uploads.items()}
    down = {label: [size / MiB / run.seconds for run in runs] for label, runs in downloads.items()}
    report.figures += _figures("upload", up, uploads) + _figures("download", down, downloads)
    report.figures += [
        Figure("ours RSS after the warm-up", ours_rss / MiB, "MiB"),
        Figure("ours memory growth", growth["ours"] / MiB, "MiB"),
        Figure("moto memory growth", growth["moto"] / MiB, "MiB"),
        Figure("moto RSS at the end", moto_rss / MiB, "MiB"),
    ]
    report.targets += [
        Target(
            "s3 upload ours / obstore",
            median(up["ours"]) / median(up["obstore"]),
            MIN_UPLOAD_VS_OBSTORE,
            "x",
            at_least=True,
        ),
        Target(
            "s3 download ours / obstore",
            median(down["ours"]) / median(down["obstore"]),
            MIN_DOWNLOAD_VS_OBSTORE,
            "x",
            at_least=True,
        ),
        Target(
            "s3 upload memory growth",
            growth["ours"] / MiB,
            MAX_MEMORY_GROWTH_MIB,
            " MiB",
            at_least=False,
        ),
    ]
    return report


def _figures(kind: str, speeds: dict[str, list[float]], runs: dict[str, list[Run]]) -> list[Figure]:
    figures = [
        Figure(f"{label} {kind}", median(samples), "MiB/s", samples)
        for label, samples in speeds.items()
    ]
    for label, done in runs.items():
        mover = [run.mover_cpu for run in done]
        moto = [run.moto_cpu for run in done]
        name = "server" if label == "ours" else "process"
        figures.append(Figure(f"{label} {name} CPU per {kind}", median(mover), "s", mover))
        figures.append(Figure(f"moto CPU per {label} {kind}", median(moto), "s", moto))
    return figures


def _start(stack: ExitStack, scratch: Path, options: argparse.Namespace, max_file_size: int) -> Rig:
    """moto and its bucket, then ours on it (and on its own tables, dropped at the end)."""
    part_size = options.part_size * MiB
    moto, ours = ours_on_s3(
        stack,
        scratch,
        options,
        label="s3",
        max_file_size=max_file_size,
        storage_options=f"&part_size={part_size}&parts_in_flight={options.parts_in_flight}",
    )
    return Rig(moto, ours, scratch, part_size, options.parts_in_flight, allocator(options))


Runner = Callable[[], Run]


def _alternate(repeat: int, runners: dict[str, Runner]) -> dict[str, list[Run]]:
    """``repeat`` runs of each contender; the order of the contenders rotates between rounds."""
    runs: dict[str, list[Run]] = {label: [] for label in runners}
    for turn in range(repeat):
        for label in rotated(list(runners), turn):
            runs[label].append(runners[label]())
    return runs


def _warm_up(rig: Rig) -> None:
    """A small multipart upload and download each: imports, connections, the schema."""
    _transfers(rig, make_file(rig.scratch / "warm-up.bin", 2 * rig.part_size + MiB), repeat=1)


def _transfers(rig: Rig, source: Path, repeat: int) -> tuple[dict[str, list[Run]], ...]:
    """The upload runs, then the download runs, of each contender, moving ``source``'s bytes.

    Both contenders download the same object, uploaded through ours; what a run stored is
    deleted afterwards (obstore's upload is overwritten by its next run), and so is that object
    at the end.
    """
    size = source.stat().st_size
    body = source.with_suffix(".body")
    content_type = make_multipart_body(body, size, content=source)

    def ours_upload() -> Run:
        run, file_id = _ours_upload(rig, body, content_type)
        _delete(rig, file_id)
        return run

    def obstore_put() -> Run:
        return _measured(rig, lambda: rig.obstore("put", OBSTORE_OBJECT, str(source)))

    uploads = _alternate(repeat, {"ours": ours_upload, "obstore": obstore_put})
    _, file_id = _ours_upload(rig, body, content_type)
    body.unlink()
    ((name, stored),) = s3_objects(rig.moto.url, BENCH_BUCKET, f"{OURS_PREFIX}/").items()
    if stored != size:
        raise RuntimeError(f"{name} holds {stored} bytes, not {size}")
    url = f"{rig.ours.url}/v1/files/{file_id}/content"

    def ours_download() -> Run:
        before = ProcessCounters.of(rig.ours.pid), ProcessCounters.of(rig.moto.pid)
        transfer = expect(curl(url), downloaded=size)
        server, moto = (ProcessCounters.of(p.pid) for p in (rig.ours, rig.moto))
        cpu = (server - before[0]).cpu_seconds, (moto - before[1]).cpu_seconds
        return Run(transfer.seconds, *cpu)

    def obstore_get() -> Run:
        return _measured(rig, lambda: rig.obstore("get", name), size=size)

    downloads = _alternate(repeat, {"ours": ours_download, "obstore": obstore_get})
    _delete(rig, file_id)
    return uploads, downloads


def _delete(rig: Rig, file_id: str) -> None:
    expect(curl(f"{rig.ours.url}/v1/files/{file_id}", "-X", "DELETE"))


def _our_objects(rig: Rig) -> dict[str, int]:
    return s3_objects(rig.moto.url, BENCH_BUCKET, f"{OURS_PREFIX}/")


def _ours_upload(rig: Rig, body: Path, content_type: str) -> tuple[Run, str]:
    """One upload through ours, timed by curl; the run and the new file's id."""
    response = rig.scratch / "response.json"
    before = ProcessCounters.of(rig.ours.pid), ProcessCounters.of(rig.moto.pid)
    transfer = expect(post_file(f"{rig.ours.url}/v1/files", body, content_type, output=response))
    server, moto = (ProcessCounters.of(p.pid) for p in (rig.ours, rig.moto))
    run = Run(transfer.seconds, (server - before[0]).cpu_seconds, (moto - before[1]).cpu_seconds)
    return run, str(read_json(response)["id"])


def _measured(rig: Rig, transfer: Callable[[], dict[str, float]], size: int | None = None) -> Run:
    """One obstore transfer, as it timed itself, with the CPU it cost moto meanwhile."""
    before = ProcessCounters.of(rig.moto.pid)
    answer = transfer()
    moto = ProcessCounters.of(rig.moto.pid) - before
    if size is not None and answer["bytes"] != size:
        raise RuntimeError(f"obstore got {answer['bytes']} bytes, expected {size}")
    return Run(answer["seconds"], answer["cpu_seconds"], moto.cpu_seconds)


def _memory_growth(rig: Rig, size: int) -> dict[str, int]:
    """Bytes by which the peak RSS of our server, and of moto, during one upload of ``size``
    bytes through ours exceeds their RSS before it."""
    body = rig.scratch / "memory.body"
    content_type = make_multipart_body(body, size)
    processes = {"ours": rig.ours.pid, "moto": rig.moto.pid}
    before = {label: rss_bytes(pid) for label, pid in processes.items()}
    for pid in processes.values():
        if not reset_peak_rss(pid):
            print(f"warning: cannot reset VmHWM of {pid}; the peak may predate the upload")
    _, file_id = _ours_upload(rig, body, content_type)
    growth = {label: peak_rss_bytes(pid) - before[label] for label, pid in processes.items()}
    _delete(rig, file_id)
    body.unlink()
    return growth


def main(argv: Sequence[str] | None = None) -> int:
    return run_script("s3_transfer", parse_args(argv), unavailable, run)


if __name__ == "__main__":
    sys.exit(main())
