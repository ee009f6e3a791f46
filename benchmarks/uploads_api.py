"""Uploads API benchmark: one large file in parts, against one ``POST /v1/files`` of its bytes.

Measured, side by side in one run, on each storage backend (``--backends``):

- ``local``: ``openai-files serve`` on local disk + SQLite;
- ``s3``: ours on moto's S3 server (started here on a free loopback port) + PostgreSQL
  (``--metadata sqlite`` for SQLite), the replicated shape;

with the same server process taking both kinds of upload, started with ``--max-file-size``
above the file's size:

- throughput (MiB of file per second, median of ``--repeat`` runs) of a ``--size`` MiB file
  (default 2 GiB), as wall time from the first byte sent to the completed file object:
  **uploads api** is ``POST /v1/uploads``, then ``--part-size`` MiB parts (default 64 MiB, so
  32 parts) sent one after the other to ``POST /v1/uploads/{id}/parts`` over one kept-alive
  connection, then ``POST /v1/uploads/{id}/complete``; **files post** is one
  ``POST /v1/files`` of the same bytes. The client is curl on both sides, streaming pre-built
  ``multipart/form-data`` bodies from disk (one per part, and one for the whole file), written
  once before anything is measured. Runs alternate between the two in a rotating order, the
  disk is synced before each, and what a run stored is deleted after it.
- the server's peak memory growth during each Uploads API run (and, for context, each
  ``POST``): its VmHWM, reset just before, minus its RSS before; the largest of the runs.
- for context: how the Uploads API's time splits between sending the parts and ``complete``
  (which assembles them: on local disk, parts sent one after another are appended to one file
  that ``complete`` links into place, moving no byte; on S3 the service copies the part objects
  into one multipart upload, ``UploadPartCopy``, and no byte passes through the server), and
  the CPU
  seconds each upload cost the server (and moto).

The purpose is ``assistants``, which has no content rules: with ``batch`` or ``fine-tune``
every byte would be read again to validate the JSONL, on both sides. Each contender's file
is checked once: its size, and a few ranges (one across a part boundary) read back through
``GET /v1/files/{id}/content`` and compared with the source.

Targets: uploads api >= 0.9x files post on local disk, >= 0.8x on S3; uploads api memory
growth <= 64 MiB.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness import MiB
from harness.clients import (
    CURL,
    MULTIPART_BOUNDARY,
    Transfer,
    curl,
    expect,
    make_multipart_body,
    post_file,
    read_json,
)
from harness.measure import (
    ProcessCounters,
    peak_rss_bytes,
    reset_peak_rss,
    rotated,
    rss_bytes,
    settle_disk,
)
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
    ours_server,
    parse_backends,
    s3_rig_unavailable,
)
from harness.stores import s3_objects

MIN_VS_FILES_POST = {"local": 0.9, "s3": 0.8}
"""The Uploads API's least throughput against one ``POST /v1/files``, by backend."""
MAX_MEMORY_GROWTH_MIB = 64
PURPOSE = "assistants"
UPLOADS_API = "uploads api"
FILES_POST = "files post"
WRITE_OUT = "%{http_code} %{time_total} %{size_upload} %{size_download}\\n"


@dataclass(frozen=True)
class Rig:
    """Our server on one backend (and moto behind it, for S3)."""

    backend: str
    ours: Server
    moto: Server | None
    scratch: Path

    def url(self, path: str) -> str:
        return self.ours.url + path

    def stored_objects(self) -> dict[str, int]:
        """What our server keeps in the bucket (S3 only; empty for local disk)."""
        if self.moto is None:
            return {}
        return s3_objects(self.moto.url, BENCH_BUCKET, f"{OURS_PREFIX}/")


@dataclass(frozen=True)
class Payload:
    """The bytes to upload, as curl will send them: the whole file in one multipart body, and
    the same bytes in one multipart body per part (field ``data``)."""

    source: Path
    size: int
    part_size: int
    body: Path
    content_type: str
    parts: list[Path]


@dataclass(frozen=True)
class Run:
    """One upload: wall seconds, memory growth and CPU of the server (and moto), and, for the
    Uploads API, the seconds curl spent sending the parts and on ``complete``."""

    seconds: float
    growth: int
    server_cpu: float
    moto_cpu: float
    moto_growth: int
    phases: dict[str, float] = field(default_factory=dict)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.partition("\n")[0])
    parser.add_argument("--size", type=int, default=2048, help="file size in MiB (2048)")
    parser.add_argument("--part-size", type=int, default=64, help="in MiB, at most 64 (64)")
    parser.add_argument("--repeat", type=int, default=3, help="runs per contender (3)")
    add_s3_rig_options(parser, backends=True)
    add_allocator_option(parser)
    parser.add_argument("--quick", action="store_true", help="a smoke run: 48 MiB, 16 MiB, 1")
    add_results_option(parser)
    return parser


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = build_parser()
    options = parser.parse_args(argv)
    if options.quick:
        options.size, options.part_size, options.repeat = 48, 16, 1
    parse_backends(parser, options)
    if not 1 <= options.part_size <= 64:
        parser.error("--part-size must be between 1 and 64 MiB (the server's part limit)")
    return options


unavailable = s3_rig_unavailable
"""Why this benchmark cannot run here (S3 needs moto, PostgreSQL its server), or None."""


def run(options: argparse.Namespace) -> Report:
    size, part_size = options.size * MiB, options.part_size * MiB
    settings = {"size_mib": options.size, "part_size_mib": options.part_size}
    settings |= {"parts": -(-size // part_size), "repeat": options.repeat}
    settings |= {"backends": ",".join(options.backends), "purpose": PURPOSE}
    if "s3" in options.backends:
        settings["s3_metadata"] = options.metadata
    settings["malloc"] = allocator_name(options)
    report = Report("uploads api", settings)
    with tempfile.TemporaryDirectory(prefix="openai-files-bench-") as temp:
        scratch = Path(temp)
        warm_up = _payload(scratch / "warm-up", 3 * MiB, MiB)
        payload = _payload(scratch / "payload", size, part_size)
        for backend in options.backends:
            try:
                with ExitStack() as stack:
                    rig = _start(stack, scratch / backend, backend, options, 2 * size)
                    _runs(rig, warm_up, repeat=1, check=False)
                    runs = _runs(rig, payload, options.repeat, check=True)
            except BaseException:
                print_logs(scratch)
                raise
            _report(report, backend, size, runs)
    return report


def print_logs(scratch: Path) -> None:
    """The end of every server log under ``scratch``: what a failed run leaves to go on."""
    for log in sorted(scratch.rglob("*.log")):
        print(f"-- {log.relative_to(scratch)}:\n{log.read_text(errors='replace')[-3000:]}")


# -- the payload --------------------------------------------------------------------------------


def _payload(directory: Path, size: int, part_size: int) -> Payload:
    """A random file of ``size`` bytes and the request bodies that carry it."""
    directory.mkdir()
    source = _random_file(directory / "source.bin", size)
    body = directory / "file.body"
    content_type = make_multipart_body(body, size, purpose=PURPOSE, content=source)
    parts = []
    with source.open("rb") as handle:
        for number, offset in enumerate(range(0, size, part_size)):
            part = directory / f"part-{number:05d}.body"
            _write_part_body(part, handle, min(part_size, size - offset))
            parts.append(part)
    return Payload(source, size, part_size, body, content_type, parts)


def _random_file(path: Path, size: int) -> Path:
    """A file of ``size`` random bytes in which no MiB repeats another, so that bytes read at
    the wrong offset cannot match the source by chance."""
    with path.open("wb") as handle:
        for offset in range(0, size, MiB):
            handle.write(os.urandom(min(MiB, size - offset)))
    return path


def _write_part_body(path: Path, source: Any, size: int) -> None:
    """The body of one ``POST /v1/uploads/{id}/parts``: a form with the next ``size`` bytes of
    ``source`` as its ``data`` file part."""
    dash = f"--{MULTIPART_BOUNDARY}"
    head = (
        f'{dash}\r\nContent-Disposition: form-data; name="data"; filename="part"\r\n'
        "Content-Type: application/octet-stream\r\n\r\n"
    )
    with path.open("wb") as body:
        body.write(head.encode())
        remaining = size
        while remaining:
            block = source.read(min(MiB, remaining))
            if not block:
                raise RuntimeError(f"the source ended {remaining} bytes early")
            body.write(block)
            remaining -= len(block)
        body.write(f"\r\n{dash}--\r\n".encode())


# -- servers ------------------------------------------------------------------------------------


def _start(
    stack: ExitStack,
    scratch: Path,
    backend: str,
    options: argparse.Namespace,
    max_file_size: int,
) -> Rig:
    """Our server on ``backend`` (after moto and its bucket, for S3)."""
    scratch.mkdir()
    if backend == "local":
        data_dir = scratch / "ours"
        data_dir.mkdir()
        ours = ours_server(data_dir, max_file_size=max_file_size, allocator=allocator(options))
        return Rig(backend, stack.enter_context(ours), None, scratch)
    moto, ours = ours_on_s3(stack, scratch, options, label="uploads", max_file_size=max_file_size)
    return Rig(backend, ours, moto, scratch)


# -- the runs -----------------------------------------------------------------------------------


def _runs(rig: Rig, payload: Payload, repeat: int, *, check: bool) -> dict[str, list[Run]]:
    """``repeat`` uploads of ``payload`` each way, in a rotating order; the first file of each
    contender is checked against the source when ``check``."""
    contenders: dict[str, Callable[[], tuple[dict[str, Any], dict[str, float]]]] = {
        UPLOADS_API: lambda: _through_uploads_api(rig, payload),
        FILES_POST: lambda: _through_files_post(rig, payload),
    }
    runs: dict[str, list[Run]] = {label: [] for label in contenders}
    for turn in range(repeat):
        for label in rotated(list(contenders), turn):
            settle_disk()
            run, file = _measured(rig, contenders[label])
            if file["bytes"] != payload.size:
                raise RuntimeError(f"{label} stored {file['bytes']} bytes, not {payload.size}")
            if check and not runs[label]:
                _check_content(rig, file["id"], payload)
            runs[label].append(run)
            expect(curl(rig.url(f"/v1/files/{file['id']}"), "-X", "DELETE"))
            leftovers = rig.stored_objects()
            if leftovers:
                raise RuntimeError(f"the bucket still holds {leftovers} after {label}")
    return runs


def _measured(
    rig: Rig, upload: Callable[[], tuple[dict[str, Any], dict[str, float]]]
) -> tuple[Run, dict[str, Any]]:
    """One upload, timed from before its first request to after its last response, with the
    server's (and moto's) peak memory growth and CPU meanwhile; the run and the file object."""
    pids = [rig.ours.pid] + ([rig.moto.pid] if rig.moto is not None else [])
    rss = [rss_bytes(pid) for pid in pids]
    for pid in pids:
        if not reset_peak_rss(pid):
            print(f"warning: cannot reset VmHWM of {pid}; the peak may predate the upload")
    cpu = [ProcessCounters.of(pid) for pid in pids]
    started = time.perf_counter()
    file, phases = upload()
    seconds = time.perf_counter() - started
    spent = [
        (ProcessCounters.of(pid) - before).cpu_seconds
        for pid, before in zip(pids, cpu, strict=True)
    ]
    growth = [peak_rss_bytes(pid) - before for pid, before in zip(pids, rss, strict=True)]
    moto_cpu, moto_growth = (spent[1], growth[1]) if rig.moto is not None else (0.0, 0)
    return Run(seconds, growth[0], spent[0], moto_cpu, moto_growth, phases), file


def _through_files_post(rig: Rig, payload: Payload) -> tuple[dict[str, Any], dict[str, float]]:
    response = rig.scratch / "response.json"
    expect(post_file(rig.url("/v1/files"), payload.body, payload.content_type, output=response))
    file: dict[str, Any] = read_json(response)
    return file, {}


def _through_uploads_api(rig: Rig, payload: Payload) -> tuple[dict[str, Any], dict[str, float]]:
    """Create, send the parts one after the other on one connection, complete."""
    response = rig.scratch / "response.json"
    declared = {"filename": "data.jsonl", "purpose": PURPOSE, "bytes": payload.size}
    declared["mime_type"] = "application/jsonl"
    created = _post_json(rig.url("/v1/uploads"), declared, response)
    upload_id = read_json(response)["id"]
    answers = [rig.scratch / f"part-{number:05d}.json" for number in range(len(payload.parts))]
    sent = _send_parts(rig.url(f"/v1/uploads/{upload_id}/parts"), payload, answers)
    part_ids = [read_json(answer)["id"] for answer in answers]
    completed = _post_json(
        rig.url(f"/v1/uploads/{upload_id}/complete"), {"part_ids": part_ids}, response
    )
    upload = read_json(response)
    if upload["status"] != "completed" or upload["file"] is None:
        raise RuntimeError(f"the upload did not complete: {upload}")
    phases = {
        "create": created.seconds,
        "parts": sum(transfer.seconds for transfer in sent),
        "complete": completed.seconds,
    }
    file: dict[str, Any] = upload["file"]
    return file, phases


def _post_json(url: str, body: dict[str, Any], output: Path) -> Transfer:
    json_header = "Content-Type: application/json"
    return expect(curl(url, "-H", json_header, "--data-binary", json.dumps(body), output=output))


def _send_parts(url: str, payload: Payload, answers: Sequence[Path]) -> list[Transfer]:
    """Every part body ``POST``ed to ``url`` by one curl, one after the other, over one kept-alive
    connection (a config file with a section per request); each answer is written to its file."""
    sections = []
    for part, answer in zip(payload.parts, answers, strict=True):
        options = {
            "url": url,
            "request": "POST",
            "upload-file": str(part),
            "output": str(answer),
            "write-out": WRITE_OUT,
        }
        lines = [f'{name} = "{_quoted(value)}"' for name, value in options.items()]
        content_type = f"multipart/form-data; boundary={MULTIPART_BOUNDARY}"
        lines += [f'header = "Content-Type: {content_type}"', 'header = "Expect:"']
        sections.append("\n".join(lines))
    config = payload.parts[0].parent / "parts.curlrc"
    config.write_text("\nnext\n".join(sections) + "\n")
    completed = subprocess.run(
        [CURL, "-sS", "--config", str(config)], capture_output=True, text=True, check=True
    )
    transfers = [Transfer.parse(line) for line in completed.stdout.splitlines()]
    if len(transfers) != len(answers):
        raise RuntimeError(f"curl answered {len(transfers)} of {len(answers)} parts")
    for transfer in transfers:
        expect(transfer)
    return transfers


def _quoted(value: str) -> str:
    """``value`` as a double-quoted string of a curl config file holds it (``\\n`` stays an
    escape, which curl turns into a newline)."""
    return value.replace('"', '\\"')


def _check_content(rig: Rig, file_id: str, payload: Payload) -> None:
    """Read a few ranges of the stored file back and compare them with the source."""
    size, boundary = payload.size, min(payload.part_size, payload.size // 2)
    ranges = [(0, 4096), (boundary - 1000, boundary + 1000), (size // 3, size // 3 + 65536)]
    ranges.append((size - 4096, size))
    received = rig.scratch / "range.bin"
    with payload.source.open("rb") as source:
        for start, end in ranges:
            url = rig.url(f"/v1/files/{file_id}/content")
            header = f"Range: bytes={start}-{end - 1}"
            expect(curl(url, "-H", header, output=received), status=206, downloaded=end - start)
            source.seek(start)
            if received.read_bytes() != source.read(end - start):
                raise RuntimeError(f"bytes {start}-{end - 1} of {file_id} differ from the source")
    received.unlink()


# -- the report ---------------------------------------------------------------------------------


def _report(report: Report, backend: str, size: int, runs: dict[str, list[Run]]) -> None:
    speeds = {label: [size / MiB / run.seconds for run in done] for label, done in runs.items()}
    for label, samples in speeds.items():
        report.figures.append(Figure(f"{backend} {label}", median(samples), "MiB/s", samples))
    for phase in ("parts", "complete"):
        seconds = [run.phases[phase] for run in runs[UPLOADS_API]]
        figure = Figure(f"{backend} {UPLOADS_API}: {phase}", median(seconds), "s", seconds)
        report.figures.append(figure)
    for label, done in runs.items():
        cpu = [run.server_cpu for run in done]
        report.figures.append(Figure(f"{backend} {label} server CPU", median(cpu), "s", cpu))
        if backend == "s3":
            moto = [run.moto_cpu for run in done]
            report.figures.append(Figure(f"s3 {label} moto CPU", median(moto), "s", moto))
    growth: dict[str, float] = {}
    for label, done in runs.items():
        samples = [run.growth / MiB for run in done]
        growth[label] = max(samples)
        figure = Figure(f"{backend} {label} memory growth (max)", growth[label], "MiB", samples)
        report.figures.append(figure)
        if backend == "s3":
            moto = [run.moto_growth / MiB for run in done]
            report.figures.append(Figure(f"s3 {label} moto memory growth", max(moto), "MiB", moto))
    ratio = median(speeds[UPLOADS_API]) / median(speeds[FILES_POST])
    report.targets += [
        Target(
            f"{backend} uploads api / files post",
            ratio,
            MIN_VS_FILES_POST[backend],
            "x",
            at_least=True,
        ),
        Target(
            f"{backend} uploads api memory growth",
            growth[UPLOADS_API],
            MAX_MEMORY_GROWTH_MIB,
            " MiB",
            at_least=False,
        ),
    ]


def main(argv: Sequence[str] | None = None) -> int:
    return run_script("uploads_api", parse_args(argv), unavailable, run)


if __name__ == "__main__":
    sys.exit(main())
