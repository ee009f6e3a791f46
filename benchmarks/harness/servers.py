"""The servers measured: ours, the baselines, and moto's S3 server with ours in front of it.

Each is a subprocess on a free loopback port (`Server`), under uvicorn with its defaults and
the same malloc settings (`PINNED`).
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import socket
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from contextlib import ExitStack
from pathlib import Path
from types import TracebackType
from typing import Self

from . import BENCHMARKS_DIR, MiB
from .stores import (
    S3_CREDENTIALS,
    S3_REGION,
    add_postgres_option,
    create_bucket,
    postgres_missing,
    postgres_tables,
)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class Server:
    """A server subprocess on a free loopback port; a context manager that starts and stops it.

    ``argv`` may contain ``{port}``, replaced by the port chosen. Output goes to ``log``. It
    must listen within ``startup_timeout`` seconds.
    """

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        *,
        log: Path,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
        startup_timeout: float = 30,
    ) -> None:
        self.name = name
        self.port = free_port()
        self.argv = [arg.replace("{port}", str(self.port)) for arg in argv]
        self.log = log
        self.env = {**os.environ, **(env or {})}
        self.cwd = cwd
        self.startup_timeout = startup_timeout
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
        self._wait_until_listening(timeout=self.startup_timeout)
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
    extra: Sequence[str] = (),
) -> Server:
    """``openai-files serve``, open to the owner ``default``: on local disk + SQLite under
    ``data_dir`` unless ``storage`` or ``metadata`` (URLs) say otherwise; ``extra`` are more
    flags (``--encryption-key-file``, ``--cache-dir``...).

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
    argv += extra
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
    extra: Sequence[str] = (),
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
        extra=extra,
    )
    return moto, stack.enter_context(ours)


def baseline_server(root: Path, *, allocator: Mapping[str, str] = PINNED) -> Server:
    """The plain Starlette app of ``baselines.py``, storing and serving files in ``root``."""
    argv = [sys.executable, "-m", "uvicorn", "baselines:app", "--app-dir", str(BENCHMARKS_DIR)]
    argv += ["--host", "127.0.0.1", "--port", "{port}", "--log-level", "warning"]
    env = {**allocator, "BENCH_BASELINE_DIR": str(root)}
    return Server("baselines", argv, log=root.with_suffix(".log"), env=env)


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


def moto_server(root: Path) -> Server:
    """moto's S3 server, run in ``root``; it keeps every object in its own memory.

    It runs with glibc's malloc defaults: it is no contender, but the store both sides use.
    """
    root.mkdir()
    argv = [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", "{port}"]
    return Server("moto", argv, log=root.with_suffix(".log"), cwd=root)


def s3_storage_url(endpoint: str, bucket: str, prefix: str) -> str:
    """The ``--storage`` URL of ours for ``bucket`` on the S3 server at ``endpoint``."""
    return f"s3://{bucket}/{prefix}?endpoint={endpoint}&region={S3_REGION}&allow_http=true"
