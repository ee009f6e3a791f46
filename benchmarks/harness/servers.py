"""What every benchmark needs: servers on loopback ports, curl as the client, test files, RSS.

Servers run as subprocesses under uvicorn with its defaults, ours through ``openai-files serve``
and the baselines from ``baselines.py``, so both sides pay for the same HTTP stack, and with the
same malloc settings (`PINNED`). The client is curl, which streams files from disk and reports
its own timings: a 256 MiB upload costs it about a quarter of the CPU time that the fastest
server spends.

The replicated shape adds two services: moto's S3 server, started here on a free port, and
PostgreSQL, which must already run (`POSTGRES_URL`); each benchmark's tables get a unique
prefix and are dropped afterwards.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Self, TypeVar

MiB = 1024 * 1024
BENCHMARKS_DIR = Path(__file__).resolve().parent
CURL = shutil.which("curl") or "/usr/bin/curl"
MULTIPART_BOUNDARY = "openai-files-benchmark-boundary"
_WRITE_OUT = "%{http_code} %{time_total} %{size_upload} %{size_download}\\n"
_T = TypeVar("_T")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class Server:
    """A server subprocess on a free loopback port; a context manager that starts and stops it.

    ``argv`` may contain ``{port}``, replaced by the port chosen. Output goes to ``log``.
    """

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        *,
        log: Path,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
    ) -> None:
        self.name = name
        self.port = free_port()
        self.argv = [arg.replace("{port}", str(self.port)) for arg in argv]
        self.log = log
        self.env = {**os.environ, **(env or {})}
        self.cwd = cwd
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        if self._process is None:
            raise RuntimeError(f"{self.name} is not running")
        return self._process.pid

    def __enter__(self) -> Self:
        with self.log.open("ab") as log:
            self._process = subprocess.Popen(
                self.argv, stdout=log, stderr=subprocess.STDOUT, env=self.env, cwd=self.cwd
            )
        self._wait_until_listening(timeout=30)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        process, self._process = self._process, None
        if process is None:
            return
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def _wait_until_listening(self, *, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self._process is not None
            if self._process.poll() is not None:
                break
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    return
            except OSError:
                time.sleep(0.05)
        tail = self.log.read_text(errors="replace")[-2000:]
        self.__exit__(None, None, None)
        raise RuntimeError(f"{self.name} did not start listening on {self.url}:\n{tail}")


PINNED: Mapping[str, str] = {
    "MALLOC_MMAP_THRESHOLD_": str(32 * MiB),
    "MALLOC_TRIM_THRESHOLD_": str(64 * MiB),
}
"""glibc malloc settings that every server gets unless told otherwise (`GLIBC_DEFAULTS`).

By default glibc serves blocks of 128 KiB or more with fresh mmap()s (a page fault per 4 KiB
touched) and gives freed heap back to the system; it raises that threshold only after some
larger block is freed. A server's speed then depends on what it happened to do before, by up to
2x for uploads here. Fixed thresholds put every contender in the same, steady state.
"""
GLIBC_DEFAULTS: Mapping[str, str] = {}


def add_allocator_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--glibc-defaults",
        action="store_true",
        help="run the servers with glibc's adaptive malloc thresholds instead of fixed ones",
    )


def allocator(options: argparse.Namespace) -> Mapping[str, str]:
    """The malloc environment ``--glibc-defaults`` asks for."""
    return GLIBC_DEFAULTS if options.glibc_defaults else PINNED


def allocator_name(options: argparse.Namespace) -> str:
    return "glibc defaults" if options.glibc_defaults else "pinned thresholds"


def ours_server(
    data_dir: Path,
    *,
    max_file_size: int | None = None,
    allocator: Mapping[str, str] = PINNED,
    storage: str | None = None,
    metadata: str | None = None,
    table_prefix: str | None = None,
) -> Server:
    """``openai-files serve``, open to the owner ``default``: on local disk + SQLite under
    ``data_dir`` unless ``storage`` or ``metadata`` (URLs) say otherwise.

    An S3 storage reads `S3_CREDENTIALS` from the environment, as any deployment would.
    """
    argv = [sys.executable, "-m", "openai_files.cli", "serve", "--host", "127.0.0.1"]
    argv += ["--port", "{port}", "--data-dir", str(data_dir), "--log-level", "warning"]
    if max_file_size is not None:
        argv += ["--max-file-size", str(max_file_size)]
    for flag, value in (
        ("--storage", storage),
        ("--metadata", metadata),
        ("--table-prefix", table_prefix),
    ):
        if value is not None:
            argv += [flag, value]
    env = {**allocator, **(S3_CREDENTIALS if storage and storage.startswith("s3:") else {})}
    return Server("openai-files", argv, log=data_dir.with_suffix(".log"), env=env)


BENCH_BUCKET = "openai-files-bench"
OURS_PREFIX = "ours"
"""Where ours keeps its objects in `BENCH_BUCKET`."""


BACKENDS = ("local", "s3")
"""Where a benchmark with ``--backends`` may run ours: local disk + SQLite, or `ours_on_s3`."""


def add_s3_rig_options(parser: argparse.ArgumentParser, *, backends: bool) -> None:
    """The options of `ours_on_s3`: ``--metadata`` and ``--postgres-url``; with ``backends``,
    also ``--backends`` (see `parse_backends`)."""
    if backends:
        parser.add_argument(
            "--backends",
            default=",".join(BACKENDS),
            help="comma-separated backends of ours to measure: local, s3 (both)",
        )
    parser.add_argument(
        "--metadata",
        choices=("postgresql", "sqlite"),
        default="postgresql",
        help="our metadata store on S3 (postgresql)"
        + ("; local disk always uses SQLite" if backends else ""),
    )
    add_postgres_option(parser)


def parse_backends(parser: argparse.ArgumentParser, options: argparse.Namespace) -> None:
    """Turn ``options.backends`` into a list of `BACKENDS`; a usage error for anything else."""
    options.backends = [name.strip() for name in options.backends.split(",") if name.strip()]
    unknown = sorted(set(options.backends) - set(BACKENDS))
    if unknown or not options.backends:
        parser.error(f"--backends takes local and/or s3, not {','.join(unknown) or 'nothing'}")


def s3_rig_unavailable(options: argparse.Namespace) -> str | None:
    """Why `ours_on_s3` cannot run here (moto, or the PostgreSQL server its records need), or
    None; None too when ``options.backends`` leaves S3 out."""
    if "s3" not in getattr(options, "backends", ("s3",)):
        return None
    missing = s3_server_missing()
    if missing is None and options.metadata == "postgresql":
        missing = postgres_missing(options.postgres_url)
    return missing


def ours_on_s3(
    stack: ExitStack,
    scratch: Path,
    options: argparse.Namespace,
    *,
    label: str,
    max_file_size: int | None = None,
    storage_options: str = "",
) -> tuple[Server, Server]:
    """moto (in ``scratch/moto``) with `BENCH_BUCKET`, and ours in front of it (its data
    directory ``scratch/ours-s3``), its records in PostgreSQL under a fresh table prefix
    (dropped when ``stack`` closes) unless ``options.metadata`` is ``sqlite``; ``storage_options``
    are appended to the storage URL's query. Both servers run until ``stack`` closes."""
    moto = stack.enter_context(moto_server(scratch / "moto"))
    create_bucket(moto.url, BENCH_BUCKET)
    metadata = table_prefix = None
    if options.metadata == "postgresql":
        metadata = options.postgres_url
        table_prefix = stack.enter_context(postgres_tables(metadata, label))
    data_dir = scratch / "ours-s3"
    data_dir.mkdir()
    ours = ours_server(
        data_dir,
        max_file_size=max_file_size,
        allocator=allocator(options),
        storage=s3_storage_url(moto.url, BENCH_BUCKET, OURS_PREFIX) + storage_options,
        metadata=metadata,
        table_prefix=table_prefix,
    )
    return moto, stack.enter_context(ours)


def baseline_server(root: Path, *, allocator: Mapping[str, str] = PINNED) -> Server:
    """The plain Starlette app of ``baselines.py``, storing and serving files in ``root``."""
    argv = [sys.executable, "-m", "uvicorn", "baselines:app", "--app-dir", str(BENCHMARKS_DIR)]
    argv += ["--host", "127.0.0.1", "--port", "{port}", "--log-level", "warning"]
    env = {**allocator, "BENCH_BASELINE_DIR": str(root)}
    return Server("baselines", argv, log=root.with_suffix(".log"), env=env)


# -- the client ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Transfer:
    """One request as curl saw it: status, total seconds, bytes sent and received."""

    status: int
    seconds: float
    uploaded: int
    downloaded: int

    @classmethod
    def parse(cls, line: str) -> Transfer:
        status, seconds, uploaded, downloaded = line.split()
        return cls(int(status), float(seconds), int(uploaded), int(downloaded))


def curl(url: str, *args: str, output: Path | None = None) -> Transfer:
    """One request; the response body goes to ``output`` (default: discarded)."""
    argv = [CURL, "-sS", "-H", "Expect:", "-o", str(output or os.devnull), "-w", _WRITE_OUT]
    completed = subprocess.run([*argv, *args, url], capture_output=True, text=True, check=True)
    return Transfer.parse(completed.stdout)


def curl_many(urls: Sequence[str]) -> list[Transfer]:
    """Requests one after the other on one kept-alive connection, bodies discarded."""
    argv = [CURL, "-sS", "-w", _WRITE_OUT]
    for url in urls:
        argv += ["-o", os.devnull, url]
    completed = subprocess.run(argv, capture_output=True, text=True, check=True)
    return [Transfer.parse(line) for line in completed.stdout.splitlines()]


def post_file(url: str, body: Path, content_type: str, *, output: Path | None = None) -> Transfer:
    """POST a file streamed from disk as the request body (curl ``-T``)."""
    return curl(
        url, "-X", "POST", "-H", f"Content-Type: {content_type}", "-T", str(body), output=output
    )


def read_json(path: Path) -> Any:
    return json.loads(path.read_text())


def expect(transfer: Transfer, *, status: int = 200, downloaded: int | None = None) -> Transfer:
    """``transfer``, after checking that it succeeded; a failed request stops the benchmark."""
    if transfer.status != status:
        raise RuntimeError(f"expected HTTP {status}, got {transfer}")
    if downloaded is not None and transfer.downloaded != downloaded:
        raise RuntimeError(f"expected {downloaded} bytes, got {transfer}")
    return transfer


# -- test data ----------------------------------------------------------------------------------


def _random_blocks(size: int) -> Iterator[bytes]:
    """``size`` incompressible bytes: one random MiB, repeated."""
    block = os.urandom(MiB)
    for offset in range(0, size, MiB):
        yield block[: min(MiB, size - offset)]


def make_file(path: Path, size: int) -> Path:
    """A file of ``size`` incompressible bytes."""
    with path.open("wb") as handle:
        handle.writelines(_random_blocks(size))
    return path


def make_multipart_body(
    path: Path, size: int, *, purpose: str = "assistants", content: Path | None = None
) -> str:
    """Write a ``multipart/form-data`` upload of a ``size``-byte file to ``path``; return its
    Content-Type. The file's bytes are those of ``content`` when given (``size`` is then its
    size), else random.

    Built once, so that every contender receives byte for byte the same request, which curl
    streams from disk like any file.
    """
    dash = f"--{MULTIPART_BOUNDARY}"
    head = (
        f'{dash}\r\nContent-Disposition: form-data; name="purpose"\r\n\r\n{purpose}\r\n'
        f'{dash}\r\nContent-Disposition: form-data; name="file"; filename="data.jsonl"\r\n'
        "Content-Type: application/octet-stream\r\n\r\n"
    )
    with path.open("wb") as body:
        body.write(head.encode())
        if content is None:
            body.writelines(_random_blocks(size))
        else:
            with content.open("rb") as source:
                shutil.copyfileobj(source, body, MiB)
        body.write(f"\r\n{dash}--\r\n".encode())
    return f"multipart/form-data; boundary={MULTIPART_BOUNDARY}"


def rotated(items: Sequence[_T], turn: int) -> list[_T]:
    """``items`` starting at ``turn``: alternating the order of contenders spreads any drift
    of the machine (caches, writeback, clock) evenly over them."""
    shift = turn % len(items)
    return [*items[shift:], *items[:shift]]


def settle_disk() -> None:
    """Flush dirty pages so that the writeback of one run does not slow down the next."""
    os.sync()


# -- memory -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ProcessCounters:
    """CPU seconds (user + system, all threads) and minor page faults of a process so far."""

    cpu_seconds: float
    minor_faults: int

    @classmethod
    def of(cls, pid: int) -> ProcessCounters:
        # Fields after the parenthesised command name, from field 3 (state) on: see proc(5).
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
        minor_faults, user, system = int(fields[7]), int(fields[11]), int(fields[12])
        return cls((user + system) / os.sysconf("SC_CLK_TCK"), minor_faults)

    def __sub__(self, other: ProcessCounters) -> ProcessCounters:
        return ProcessCounters(
            self.cpu_seconds - other.cpu_seconds, self.minor_faults - other.minor_faults
        )


def _status_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    raise RuntimeError(f"no {field} in /proc/{pid}/status")


def open_descriptors(pid: int) -> tuple[int, int]:
    """How many descriptors ``pid`` has open: (files, pipes and the like; sockets). Sockets
    come and go with connection pools; the rest should not grow."""
    files = sockets = 0
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:  # closed since it was listed
            continue
        if target.startswith("socket:"):
            sockets += 1
        else:
            files += 1
    return files, sockets


def rss_bytes(pid: int) -> int:
    """The resident set size of ``pid`` now (VmRSS)."""
    return _status_kib(pid, "VmRSS") * 1024


def peak_rss_bytes(pid: int) -> int:
    """The highest resident set size of ``pid`` (VmHWM) since start or the last reset."""
    return _status_kib(pid, "VmHWM") * 1024


def reset_peak_rss(pid: int) -> bool:
    """Reset VmHWM to the current RSS (Linux ``clear_refs`` 5); False where not permitted."""
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")
    except OSError:
        return False
    return True


# -- the replicated shape: an S3 server and PostgreSQL ------------------------------------------

S3_REGION = "us-east-1"
S3_CREDENTIALS: Mapping[str, str] = {
    "AWS_ACCESS_KEY_ID": "openai-files-benchmark",
    "AWS_SECRET_ACCESS_KEY": "openai-files-benchmark",
    "AWS_REGION": S3_REGION,
}
"""What ours and the obstore baseline read from the environment; moto accepts any keys."""
POSTGRES_URL = os.environ.get(
    "OPENAI_FILES_BENCH_POSTGRES", "postgresql+asyncpg://postgres@127.0.0.1:5432/postgres"
)
"""The PostgreSQL database the benchmarks use (``OPENAI_FILES_BENCH_POSTGRES`` overrides it)."""


def add_postgres_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--postgres-url",
        default=POSTGRES_URL,
        help="SQLAlchemy URL of the PostgreSQL database to use (OPENAI_FILES_BENCH_POSTGRES)",
    )


def s3_server_missing() -> str | None:
    """Why moto's S3 server or the obstore baseline cannot run here, or None when they can."""
    for module in ("moto.server", "boto3", "obstore"):
        try:
            found = importlib.util.find_spec(module) is not None
        except ImportError:
            found = False
        if not found:
            return f"{module} is not installed (pip install -e '.[dev]')"
    return None


def postgres_missing(url: str) -> str | None:
    """Why the PostgreSQL at ``url`` cannot be used, or None when it answers."""
    from sqlalchemy.engine import make_url

    if importlib.util.find_spec("asyncpg") is None:
        return "asyncpg is not installed (pip install -e '.[postgres]')"
    parsed = make_url(url)
    host, port = parsed.host or "127.0.0.1", parsed.port or 5432
    try:
        with socket.create_connection((host, port), timeout=2):
            return None
    except OSError as exc:
        return f"PostgreSQL is not reachable on {host}:{port} ({exc.strerror or exc})"


def moto_server(root: Path) -> Server:
    """moto's S3 server, run in ``root``; it keeps every object in its own memory.

    It runs with glibc's malloc defaults: it is no contender, but the store both sides use.
    """
    root.mkdir()
    argv = [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", "{port}"]
    return Server("moto", argv, log=root.with_suffix(".log"), cwd=root)


def s3_client(endpoint: str) -> Any:
    """A boto3 S3 client of the server at ``endpoint``, with the benchmarks' credentials."""
    import boto3  # type: ignore[import-untyped]  # only the S3 benchmarks need it

    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name=S3_REGION,
        aws_access_key_id=S3_CREDENTIALS["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=S3_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
    )


def create_bucket(endpoint: str, bucket: str) -> None:
    s3_client(endpoint).create_bucket(Bucket=bucket)


def s3_objects(endpoint: str, bucket: str, prefix: str) -> dict[str, int]:
    """The size of every object under ``prefix``, by name (the first 1,000 objects)."""
    listing = s3_client(endpoint).list_objects_v2(Bucket=bucket, Prefix=prefix)
    return {item["Key"]: item["Size"] for item in listing.get("Contents", [])}


def s3_storage_url(endpoint: str, bucket: str, prefix: str) -> str:
    """The ``--storage`` URL of ours for ``bucket`` on the S3 server at ``endpoint``."""
    return f"s3://{bucket}/{prefix}?endpoint={endpoint}&region={S3_REGION}&allow_http=true"


@contextmanager
def postgres_tables(url: str, label: str) -> Iterator[str]:
    """A table prefix no one else uses, for the block; its tables are dropped afterwards."""
    prefix = f"bench_{secrets.token_hex(4)}_{label}_"
    try:
        yield prefix
    finally:
        asyncio.run(_drop_tables(url, prefix))


async def _drop_tables(url: str, prefix: str) -> None:
    from openai_files import SQLMetadataStore

    store = SQLMetadataStore(url, table_prefix=prefix)
    try:
        await store.drop_schema()
    finally:
        await store.aclose()
