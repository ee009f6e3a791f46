"""Small-request benchmark: ours on each backend against ogx's files API, 1 KB files.

Measured, side by side in one run, with wrk as the client on loopback (``apt-get install -y
wrk``; without it the script says so and exits with status 2): requests per second of four
operations, ``--seconds`` per run, median of ``--repeat`` rounds; in each round every operation
runs against every contender in turn, in an order that rotates from round to round.

- ``upload``: ``POST /v1/files``, a 1 KB ``.txt`` file of purpose ``assistants``, 8 connections
  (``--upload-connections``);
- ``retrieve``: ``GET /v1/files/{id}``, spread over the ids of ``--seeded`` stored files;
- ``list``: ``GET /v1/files?limit=20``;
- ``content``: ``GET /v1/files/{id}/content`` of those 1 KB files;

the three reads with 16 connections (``--connections``); the disk is synced before each run.
Also measured: the server's CPU seconds (user + system, every thread of the server and of any
process it started) per 1,000 requests of each operation, read from ``/proc`` before and after
each run; a shared machine disturbs that figure far less than requests per second. The CPU of
PostgreSQL's own processes is not counted.

The contenders, each one process started as its users start it:

- ``ours-default``: ``openai-files serve --data-dir DIR``, the embedded default (local disk +
  SQLite in DIR);
- ``ours-memory``: ``openai-files serve --storage memory:// --metadata memory://``;
- ``ours-no-fsync``: ``openai-files serve --data-dir DIR --no-fsync``, the embedded default
  with neither the files nor SQLite's commits flushed: shown, not judged, for what durability
  costs each operation and what is left without it;
- ``ours-files-on-disk``: the embedded default with every file's bytes on disk
  (``--inline-max 0``, the default of earlier releases: a 1 KB file's bytes flushed to a file
  of their own before the record commits, instead of written with it): shown, not judged, for
  what keeping small files in the database saves each operation;
- ``ours-postgres``: local disk + PostgreSQL (``--postgres-url``, tables under a unique prefix,
  dropped at the end);
- ``ours-postgres-files-on-disk``: ``ours-postgres`` with ``--inline-max 0``, shown, not judged,
  as ``ours-files-on-disk`` is;
- ``ogx``: ogx's files API (``ogx==1.5.0``, ``inline::localfs`` + SQLite) with the
  configuration in ``ogx-files-config.yaml`` beside this script. ogx needs Python >= 3.12:
  ``--ogx-python`` (or ``OPENAI_FILES_BENCH_OGX_PYTHON``) names an interpreter, by default the
  newest ``python3.12`` or later on the PATH that runs; when that interpreter lacks
  ``ogx==1.5.0``, a venv with it is created under ``--cache-dir`` (once; ``pip install`` needs
  the network). Without one, a ``--quick`` smoke run leaves ogx out; a full run cannot run.

Every server logs at level warning (ogx: ``OGX_LOGGING=all=warning``): no line per request.

Before measuring, each contender must answer an upload, a retrieve, a list and a content
request as the OpenAI Files API does, with the same requests that wrk then sends.

Where ``taskset`` exists and at least two CPUs are allowed, wrk runs on the first CPU and the
servers on the others (``--no-pin`` turns that off), so that the client does not take the
servers' CPU; wrk builds every request once and spends a few microseconds on each.

Targets, per operation: ours-default >= 3x ogx; ours-default >= 0.6x ours-memory;
ours-postgres >= 0.5x ours-memory.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Mapping, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import httpx
from harness import BENCHMARKS_DIR
from harness.measure import rotated, settle_disk, tree_cpu_seconds
from harness.report import Figure, Report, Target, median, print_table
from harness.results import add_results_option, run_script
from harness.servers import Server, add_allocator_option, allocator, allocator_name, ours_server
from harness.stores import add_postgres_option, postgres_missing, postgres_tables
from harness.wrk import spread_script, upload_script, wrk, wrk_missing

CONTENDERS = (
    "ours-default",
    "ours-memory",
    "ours-no-fsync",
    "ours-files-on-disk",
    "ours-postgres",
    "ours-postgres-files-on-disk",
    "ogx",
)
OPERATIONS = ("upload", "retrieve", "list", "content")
FILE_SIZE = 1024
CONTENT = b"x" * FILE_SIZE
FILENAME = "small.txt"
PURPOSE = "assistants"
LIST_PATH = "/v1/files?limit=20"

OGX_VERSION = "1.5.0"
OGX_CONFIG = BENCHMARKS_DIR / "ogx-files-config.yaml"
OGX_PYTHON_VARIABLE = "OPENAI_FILES_BENCH_OGX_PYTHON"
OGX_MIN_PYTHON = (3, 12)
OGX_STARTUP_SECONDS = 120

MIN_DEFAULT_VS_OGX = 3.0
MIN_SQLITE_VS_MEMORY = 0.6
MIN_POSTGRES_VS_MEMORY = 0.5
TARGETS = (
    ("ours-default", "ogx", MIN_DEFAULT_VS_OGX),
    ("ours-default", "ours-memory", MIN_SQLITE_VS_MEMORY),
    ("ours-postgres", "ours-memory", MIN_POSTGRES_VS_MEMORY),
)
"""(contender, reference, least ratio of their requests per second), for every operation."""


def default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "openai-files-bench"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.partition("\n")[0])
    parser.add_argument(
        "--only", default=",".join(CONTENDERS), help="comma-separated contenders (all)"
    )
    parser.add_argument("--seconds", type=int, help="seconds per run (10; --quick: 1)")
    parser.add_argument("--repeat", type=int, help="rounds (3; --quick: 1)")
    parser.add_argument("--connections", type=int, default=16, help="for reads (16)")
    parser.add_argument("--upload-connections", type=int, default=8, help="for uploads (8)")
    parser.add_argument("--seeded", type=int, help="files stored before (100; --quick: 30)")
    parser.add_argument("--no-pin", dest="pin", action="store_false", help="no taskset")
    parser.add_argument(
        "--ogx-python",
        default=os.environ.get(OGX_PYTHON_VARIABLE),
        help=f"a Python >= 3.12 for ogx ({OGX_PYTHON_VARIABLE}; default: found on the PATH)",
    )
    parser.add_argument(
        "--cache-dir",
        type=Path,
        default=default_cache_dir(),
        help="where the ogx venv is created when needed (~/.cache/openai-files-bench)",
    )
    add_postgres_option(parser)
    add_allocator_option(parser)
    parser.add_argument("--quick", action="store_true", help="a smoke run: 1 s, 1 round, 30 files")
    add_results_option(parser)
    return parser


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = build_parser()
    options = parser.parse_args(argv)
    defaults = (1, 1, 30) if options.quick else (10, 3, 100)
    for name, default in zip(("seconds", "repeat", "seeded"), defaults, strict=True):
        if getattr(options, name) is None:
            setattr(options, name, default)
    options.only = [name.strip() for name in options.only.split(",") if name.strip()]
    unknown = sorted(set(options.only) - set(CONTENDERS))
    if unknown or not options.only:
        parser.error(f"--only takes {', '.join(CONTENDERS)}, not {','.join(unknown) or 'none'}")
    options.only = [name for name in CONTENDERS if name in options.only]
    return options


# -- ogx ---------------------------------------------------------------------------------------


def python_version(python: str) -> tuple[int, int] | None:
    """The (major, minor) version of the interpreter ``python``, or None if it does not run."""
    try:
        out = subprocess.run(
            [python, "-c", "import sys; print(*sys.version_info[:2])"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split()
    except (OSError, subprocess.CalledProcessError):
        return None
    return int(out[0]), int(out[1])


def ogx_interpreter(options: argparse.Namespace) -> str | None:
    """The interpreter that runs ogx or makes its venv: ``--ogx-python``, else the newest
    ``python3.N`` (N >= 12) on the PATH that runs (a version manager's shim for a version it
    has not selected is on the PATH but does not run)."""
    if options.ogx_python:
        return str(options.ogx_python)
    for minor in range(20, OGX_MIN_PYTHON[1] - 1, -1):
        found = shutil.which(f"python3.{minor}")
        if found and python_version(found) is not None:
            return found
    return None


def ogx_interpreter_missing(options: argparse.Namespace) -> str | None:
    python = ogx_interpreter(options)
    if python is None:
        return f"ogx needs Python >= 3.12: pass --ogx-python PATH or set {OGX_PYTHON_VARIABLE}"
    found = python_version(python)
    if found is None or found < OGX_MIN_PYTHON:
        return f"ogx needs Python >= 3.12; {python} is {found or 'not runnable'}"
    return None


def has_ogx(python: Path | str) -> bool:
    check = f"import importlib.metadata as m, sys; sys.exit(m.version('ogx') != {OGX_VERSION!r})"
    try:
        return subprocess.run([str(python), "-c", check], capture_output=True).returncode == 0
    except OSError:
        return False


def ogx_python(options: argparse.Namespace) -> str:
    """An interpreter with ``ogx==OGX_VERSION``: the one given when it has it, else the venv
    under ``--cache-dir``, created and installed when missing."""
    python = ogx_interpreter(options)
    assert python is not None  # unavailable() said so otherwise
    if has_ogx(python):
        return python
    venv = options.cache_dir / f"ogx-{OGX_VERSION}"
    venv_python = venv / "bin" / "python"
    if not has_ogx(venv_python):
        print(f"creating {venv} with ogx=={OGX_VERSION} (once)...", flush=True)
        subprocess.run([python, "-m", "venv", "--clear", str(venv)], check=True)
        pip = [str(venv_python), "-m", "pip", "install", "--quiet"]
        subprocess.run([*pip, f"ogx=={OGX_VERSION}"], check=True)
    return str(venv_python)


def ogx_server(python: str, scratch: Path, env: Mapping[str, str]) -> Server:
    """ogx serving ``OGX_CONFIG``, its files and databases in ``scratch/ogx``, with a home of
    its own, as the configuration's header says to run it; at log level warning, as ours runs
    here, so that neither writes a log line per request."""
    data, home = scratch / "ogx", scratch / "ogx-home"
    data.mkdir()
    home.mkdir()
    argv = [python, "-m", "ogx.cli.ogx", "run", str(OGX_CONFIG), "--port", "{port}", "--insecure"]
    env = {**env, "OGX_DATA_DIR": str(data), "HOME": str(home), "OGX_LOGGING": "all=warning"}
    log = scratch / "ogx.log"
    return Server("ogx", argv, log=log, env=env, cwd=scratch, startup_timeout=OGX_STARTUP_SECONDS)


# -- the rig -----------------------------------------------------------------------------------


def on_postgres(name: str) -> bool:
    """Whether the contender ``name`` keeps its records in PostgreSQL (``--postgres-url``)."""
    return name.startswith("ours-postgres")


def unavailable(options: argparse.Namespace) -> str | None:
    """Why this benchmark cannot run here, or None."""
    missing = wrk_missing()
    if missing is None and "ogx" in options.only:
        missing = ogx_interpreter_missing(options)
        if missing is not None:  # a contender to compare with, not a part of ours
            missing += " (optional)"
    if missing is None and any(on_postgres(name) for name in options.only):
        missing = postgres_missing(options.postgres_url)
    return missing


@dataclass(frozen=True)
class Pinning:
    """The ``taskset`` prefixes of the client's and the servers' commands (empty: unpinned)."""

    client: tuple[str, ...] = ()
    server: tuple[str, ...] = ()

    @classmethod
    def choose(cls, wanted: bool) -> Pinning:
        cpus = sorted(os.sched_getaffinity(0))
        if not wanted or len(cpus) < 2 or shutil.which("taskset") is None:
            return cls()
        servers = ",".join(str(cpu) for cpu in cpus[1:])
        return cls(("taskset", "-c", str(cpus[0])), ("taskset", "-c", servers))

    def __str__(self) -> str:
        if not self.client:
            return "unpinned"
        return f"wrk on CPU {self.client[-1]}, servers on CPU {self.server[-1]} (taskset)"


def start(
    name: str, stack: ExitStack, scratch: Path, options: argparse.Namespace, pinning: Pinning
) -> Server:
    """Start the contender ``name``; it runs until ``stack`` closes."""
    env = allocator(options)
    if name == "ogx":
        server = ogx_server(ogx_python(options), scratch, env)
    else:
        data_dir = scratch / name
        data_dir.mkdir()
        metadata = table_prefix = storage = None
        extra = ["--no-fsync"] if name == "ours-no-fsync" else []
        if name == "ours-memory":
            storage = metadata = "memory://"
        elif name.endswith("-files-on-disk"):  # every file's bytes in a file of its own
            extra = ["--inline-max", "0"]
        if on_postgres(name):
            metadata = options.postgres_url
            table_prefix = stack.enter_context(postgres_tables(metadata, "small"))
        server = ours_server(
            data_dir,
            allocator=env,
            storage=storage,
            metadata=metadata,
            table_prefix=table_prefix,
            extra=extra,
        )
        server.name = name
    server.argv = [*pinning.server, *server.argv]  # not started yet: taskset execs it
    return stack.enter_context(server)


def check_and_seed(server: Server, count: int) -> list[str]:
    """Check that ``server`` answers the four operations as the Files API does, then store
    ``count`` 1 KB files; their ids."""
    with httpx.Client(base_url=server.url, timeout=60) as client:

        def upload() -> str:
            files = {"file": (FILENAME, CONTENT, "text/plain")}
            response = client.post("/v1/files", data={"purpose": PURPOSE}, files=files)
            _expect(server, response)
            body = response.json()
            if body.get("object") != "file" or body.get("bytes") != FILE_SIZE:
                raise RuntimeError(f"{server.name}: unexpected upload answer {body}")
            file_id: str = body["id"]
            return file_id

        file_id = upload()
        retrieved = _expect(server, client.get(f"/v1/files/{file_id}")).json()
        listed = _expect(server, client.get(LIST_PATH)).json()
        content = _expect(server, client.get(f"/v1/files/{file_id}/content")).content
        if retrieved.get("id") != file_id or content != CONTENT:
            raise RuntimeError(f"{server.name}: retrieve or content differ from the upload")
        if listed.get("object") != "list" or file_id not in {f["id"] for f in listed["data"]}:
            raise RuntimeError(f"{server.name}: the list does not show the upload: {listed}")
        return [upload() for _ in range(count)]


def _expect(server: Server, response: httpx.Response) -> httpx.Response:
    if response.status_code != 200:
        raise RuntimeError(
            f"{server.name}: {response.request.method} {response.request.url.path} "
            f"answered {response.status_code}: {response.text[:500]}"
        )
    return response


def scripts(scratch: Path, name: str, ids: Sequence[str]) -> dict[str, Path | None]:
    """The wrk script of each operation against the contender ``name``."""
    retrieve = [f"/v1/files/{file_id}" for file_id in ids]
    content = [f"/v1/files/{file_id}/content" for file_id in ids]
    return {
        "upload": scratch / "upload.lua",
        "retrieve": spread_script(scratch / f"{name}-retrieve.lua", retrieve),
        "list": None,
        "content": spread_script(scratch / f"{name}-content.lua", content),
    }


def run(options: argparse.Namespace) -> Report:
    pinning = Pinning.choose(options.pin)
    settings = {
        "contenders": ",".join(options.only),
        "seconds": options.seconds,
        "repeat": options.repeat,
        "connections": f"{options.connections} ({options.upload_connections} for uploads)",
        "pinning": str(pinning),
        "malloc": allocator_name(options),
    }
    report = Report("small_requests", settings)
    print(f"small_requests: {pinning}", flush=True)
    with tempfile.TemporaryDirectory(prefix="openai-files-bench-") as temp, ExitStack() as stack:
        scratch = Path(temp)
        upload_script(scratch / "upload.lua", CONTENT, filename=FILENAME, purpose=PURPOSE)
        servers: dict[str, Server] = {}
        lua: dict[str, dict[str, Path | None]] = {}
        for name in options.only:
            servers[name] = start(name, stack, scratch, options, pinning)
            lua[name] = scripts(scratch, name, check_and_seed(servers[name], options.seeded))
        rates: dict[tuple[str, str], list[float]] = {}
        cpus: dict[tuple[str, str], list[float]] = {}
        for turn in range(options.repeat):
            for operation in OPERATIONS:
                for name in rotated(options.only, turn):
                    server = servers[name]
                    path = LIST_PATH if operation == "list" else "/v1/files"
                    connections = (
                        options.upload_connections if operation == "upload" else options.connections
                    )
                    settle_disk()  # the files the run before wrote are not flushed in this one
                    before = tree_cpu_seconds(server.pid)
                    measured = wrk(
                        server.url + path,
                        seconds=options.seconds,
                        connections=connections,
                        script=lua[name][operation],
                        prefix=pinning.client,
                    )
                    cpu = (tree_cpu_seconds(server.pid) - before) / measured.requests * 1000
                    rates.setdefault((operation, name), []).append(measured.rate)
                    cpus.setdefault((operation, name), []).append(cpu)
                    print(
                        f"  {operation:8} {name:13} {measured.rate:9,.0f} req/s "
                        f"{measured.latency_ms:7.1f} ms {cpu:6.3f} CPU s/1k",
                        flush=True,
                    )
    _report(report, options.only, rates, cpus)
    return report


def _report(
    report: Report,
    contenders: Sequence[str],
    rates: Mapping[tuple[str, str], list[float]],
    cpus: Mapping[tuple[str, str], list[float]],
) -> None:
    for (operation, name), samples in rates.items():
        report.figures.append(Figure(f"{operation} {name}", median(samples), "req/s", samples))
    for (operation, name), samples in cpus.items():
        figure = Figure(f"{operation} {name} CPU", median(samples), "s/1k req", samples)
        report.figures.append(figure)
    for name, reference, least in TARGETS:
        if name not in contenders or reference not in contenders:
            continue
        for operation in OPERATIONS:
            ratio = median(rates[operation, name]) / median(rates[operation, reference])
            report.targets.append(
                Target(f"{operation}: {name} / {reference}", ratio, least, "x", at_least=True)
            )
    print_matrix(contenders, rates, cpus)


def print_matrix(
    contenders: Sequence[str],
    rates: Mapping[tuple[str, str], list[float]],
    cpus: Mapping[tuple[str, str], list[float]],
) -> None:
    """Requests per second and CPU seconds per 1,000 requests, an operation a row."""
    print("\nrequests per second (median), server CPU seconds per 1,000 requests:")
    rows = [
        [operation]
        + [
            f"{median(rates[operation, name]):,.0f}  ({median(cpus[operation, name]):.3f} s)"
            for name in contenders
        ]
        for operation in OPERATIONS
    ]
    print_table(["req/s (CPU s/1k)", *contenders], rows)


def without_missing_ogx(options: argparse.Namespace) -> argparse.Namespace:
    """Under ``--quick``, ogx left out of the contenders when no interpreter for it is found,
    so that a smoke run still runs ours (it judges nothing); a full run needs ogx."""
    if options.quick and "ogx" in options.only:
        missing = ogx_interpreter_missing(options)
        if missing is not None:
            print(f"ogx left out of this smoke run: {missing}", flush=True)
            options.only = [name for name in options.only if name != "ogx"]
    return options


def main(argv: Sequence[str] | None = None) -> int:
    return run_script("small_requests", without_missing_ogx(parse_args(argv)), unavailable, run)


if __name__ == "__main__":
    sys.exit(main())
