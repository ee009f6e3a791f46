"""Server stack benchmark: small requests through each HTTP server ``openai-files serve`` could run.

Measured, side by side in one run, with wrk (``apt-get install wrk``) as the client on loopback:
requests per second of a hello-world Starlette endpoint and of ours on memory backends
(retrieve, list ``limit=20``, 1 KB content, 1 KB upload), ``--connections`` connections
(default 16; 8 for uploads), ``--seconds`` per run, median of ``--repeat`` runs that alternate
between the stacks in a rotating order; and the server's CPU seconds (user + system, every
thread and process of the server) per 1,000 requests, which a machine shared with other work
disturbs far less than requests per second. Every stack serves one worker:

- ``uvicorn-h11``: uvicorn on asyncio with h11 (uvicorn's pure-Python choice);
- ``uvicorn-httptools``: uvicorn on uvloop with httptools (``uvicorn[standard]``);
- ``granian``: granian's ASGI interface (its HTTP server in Rust) on uvloop.

Ours is the app of ``openai-files serve`` (its worker factory, `FACTORY`), so every stack runs
the same app with the same settings. The figures decide ``serve``'s default stack; the large
transfers on the chosen stack are ``upload.py`` and ``download.py``.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
import tempfile
from collections.abc import Mapping, Sequence
from contextlib import ExitStack
from pathlib import Path

import httpx
from harness import BENCHMARKS_DIR
from harness.measure import rotated, tree_cpu_seconds
from harness.report import Figure, Report, median
from harness.results import add_results_option, run_script
from harness.servers import Server
from harness.wrk import upload_script, wrk, wrk_missing

from openai_files.cli import build_parser
from openai_files.cli._serve_app import FACTORY, worker_environment

STACKS = ("uvicorn-h11", "uvicorn-httptools", "granian")
WORKLOADS = ("hello", "retrieve", "list", "content", "upload")
SEEDED_FILES = 30
"""Files stored before the runs, so that a list page holds ``limit=20`` of them."""


def build_parser_() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.partition("\n")[0])
    parser.add_argument("--stacks", default=",".join(STACKS), help="comma-separated stacks")
    parser.add_argument("--seconds", type=int, default=5, help="seconds per run (5)")
    parser.add_argument("--repeat", type=int, default=3, help="runs per stack and workload (3)")
    parser.add_argument("--connections", type=int, default=16, help="connections (16)")
    parser.add_argument("--quick", action="store_true", help="a smoke run: 1 s, 1 run")
    add_results_option(parser)
    return parser


def unavailable(options: argparse.Namespace) -> str | None:
    """Why this benchmark cannot run here (wrk, or a stack asked for), or None."""
    return wrk_missing() or stack_missing(options.stacks)


def stack_missing(stacks: Sequence[str]) -> str | None:
    """Why a stack asked for cannot run here, or None."""
    if "granian" in stacks and importlib.util.find_spec("granian") is None:
        return "granian is not installed (pip install granian; or --stacks without it)"
    return None


def command(stack: str, app: str, *, factory: bool) -> list[str]:
    """The command line that serves ``app`` (an import string) on ``stack``."""
    python = sys.executable
    if stack == "granian":
        argv = [python, "-m", "granian", "--interface", "asgi", "--loop", "uvloop", "--no-ws"]
        argv += ["--host", "127.0.0.1", "--port", "{port}", "--log-level", "warning"]
        return [*argv, *(["--factory"] if factory else []), app]
    loop, http = ("asyncio", "h11") if stack == "uvicorn-h11" else ("uvloop", "httptools")
    argv = [python, "-m", "uvicorn", "--loop", loop, "--http", http, "--no-access-log"]
    argv += ["--host", "127.0.0.1", "--port", "{port}", "--log-level", "warning"]
    return [*argv, *(["--factory"] if factory else []), app]


def ours_environment(scratch: Path) -> Mapping[str, str]:
    """The settings of ``openai-files serve`` on memory backends, open, without a sweeper."""
    args = build_parser().parse_args(
        ["serve", "--storage", "memory://", "--metadata", "memory://", "--sweep-interval", "0"]
    )
    args.data_dir = str(scratch)
    args.log_level = "warning"
    return worker_environment(args)


def seed(url: str) -> str:
    """Store `SEEDED_FILES` small files; the id of one of them."""
    with httpx.Client(base_url=url) as client:
        for n in range(SEEDED_FILES):
            files = {"file": (f"seed-{n}.txt", b"x" * 1024, "text/plain")}
            response = client.post("/v1/files", data={"purpose": "assistants"}, files=files)
            response.raise_for_status()
        file_id: str = response.json()["id"]
    return file_id


def run(options: argparse.Namespace) -> Report:
    settings = {"seconds": options.seconds, "repeat": options.repeat}
    report = Report("server_stack", {**settings, "connections": options.connections})
    with tempfile.TemporaryDirectory(prefix="openai-files-bench-") as temp, ExitStack() as stack:
        scratch = Path(temp)
        env = ours_environment(scratch)
        hello, ours, file_ids = {}, {}, {}
        for name in options.stacks:
            hello_cmd = command(name, "baselines:app", factory=False)  # found from the cwd
            hello[name] = stack.enter_context(
                Server(
                    f"hello-{name}",
                    hello_cmd,
                    log=scratch / f"hello-{name}.log",
                    cwd=BENCHMARKS_DIR,
                )
            )
            ours[name] = stack.enter_context(
                Server(
                    f"ours-{name}",
                    command(name, FACTORY, factory=True),
                    log=scratch / f"ours-{name}.log",
                    env=env,
                )
            )
            file_ids[name] = seed(ours[name].url)
        script = upload_script(
            scratch / "upload.lua", b"x" * 1024, filename="small.txt", purpose="assistants"
        )
        samples: dict[tuple[str, str], list[float]] = {}
        cpu_samples: dict[tuple[str, str], list[float]] = {}
        for turn in range(options.repeat):
            for workload in WORKLOADS:
                for name in rotated(options.stacks, turn):
                    url, file_id = ours[name].url, file_ids[name]
                    target = {
                        "hello": hello[name].url + "/hello",
                        "retrieve": f"{url}/v1/files/{file_id}",
                        "list": f"{url}/v1/files?limit=20",
                        "content": f"{url}/v1/files/{file_id}/content",
                        "upload": f"{url}/v1/files",
                    }[workload]
                    connections = (
                        options.connections // 2 if workload == "upload" else options.connections
                    )
                    server = hello[name] if workload == "hello" else ours[name]
                    before = tree_cpu_seconds(server.pid)
                    measured = wrk(
                        target,
                        seconds=options.seconds,
                        connections=connections,
                        threads=2,
                        script=script if workload == "upload" else None,
                    )
                    rate = measured.rate
                    cpu = (tree_cpu_seconds(server.pid) - before) / measured.requests * 1000
                    samples.setdefault((workload, name), []).append(rate)
                    cpu_samples.setdefault((workload, name), []).append(cpu)
                    print(
                        f"  {workload:8} {name:18} {rate:9,.0f} req/s {cpu:6.3f} CPU s/1k",
                        flush=True,
                    )
        for (workload, name), rates in samples.items():
            report.figures.append(Figure(f"{workload} {name}", median(rates), "req/s", rates))
        for (workload, name), cpus in cpu_samples.items():
            figure = Figure(f"{workload} {name} CPU", median(cpus), "s/1k req", cpus)
            report.figures.append(figure)
    return report


def main(argv: Sequence[str] | None = None) -> int:
    options = build_parser_().parse_args(argv)
    if options.quick:
        options.seconds, options.repeat = 1, 1
    options.stacks = [s.strip() for s in options.stacks.split(",") if s.strip()]
    if options.quick and stack_missing(options.stacks) is not None:
        print(f"server_stack: leaving granian out: {stack_missing(options.stacks)}")
        options.stacks = [stack for stack in options.stacks if stack != "granian"]
    return run_script("server_stack", options, unavailable, run)


if __name__ == "__main__":
    sys.exit(main())
