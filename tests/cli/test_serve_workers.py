"""``openai-files serve --workers N``: several processes on one port, one storage, one database.

Which worker served a request is read from the operating system, not from the server: the
worker process that holds the server side of the client's TCP connection (``/proc``). So the
tests know that a file created through one worker was read and deleted through another.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from pathlib import Path

import anyio
import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from openai_files.cli import build_parser
from openai_files.metadata.base import DEFAULT_TABLE_PREFIX

from ..databases import POSTGRES_URL, drop_tables, require_database, unique_prefix
from ..support import ServerProcess, free_port

pytestmark = pytest.mark.skipif(not Path("/proc/net/tcp").exists(), reason="reads /proc")

BACKENDS = ["sqlite", "postgresql"]
DATA = b"one line of a file\n"


class Workers:
    """``openai-files serve --workers 2`` on local disk and one database (SQLite in the data
    directory, or PostgreSQL under a fresh table prefix)."""

    def __init__(self, workdir: Path, backend: str, *args: str) -> None:
        self.workdir = workdir
        self.metadata_url = f"sqlite+aiosqlite:///{workdir / 'data' / 'files.db'}"
        self.prefix = DEFAULT_TABLE_PREFIX
        options = ["--workers", "2", "--data-dir", str(workdir / "data"), *args]
        if backend == "postgresql":
            require_database("postgresql")
            self.metadata_url, self.prefix = POSTGRES_URL, unique_prefix()
            options += ["--metadata", POSTGRES_URL, "--table-prefix", self.prefix]
        self.backend = backend
        self.server = ServerProcess(workdir, *options)

    @property
    def url(self) -> str:
        return self.server.url

    def start(self) -> None:
        """Return once both workers have started."""
        self.server.wait_until_serving()
        deadline = time.monotonic() + 30
        while self.server.output().count("Application startup complete") < 2:
            assert time.monotonic() < deadline, f"a worker did not start: {self.server.output()}"
            time.sleep(0.1)

    def stop(self) -> None:
        self.server.stop()
        if self.backend == "postgresql":
            anyio.run(drop_tables, POSTGRES_URL, self.prefix)

    def children(self) -> set[int]:
        """The processes the server started (its workers, and any helper of theirs)."""
        pid = self.server.process.pid
        found = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        return {int(child) for child in found}

    def worker_of(self, client: httpx.Client) -> int:
        """The worker holding the server side of ``client``'s one open connection."""
        response = client.get("/v1/files", params={"limit": 1})
        response.raise_for_status()
        _, client_port = response.extensions["network_stream"].get_extra_info("client_addr")
        return self.worker_holding(client_port)

    def worker_holding(self, client_port: int) -> int:
        """The worker that accepted the connection from ``client_port`` (waiting for one to
        accept it, for a connection that has sent nothing)."""
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            inode = server_socket_inode(self.server.port, client_port)
            for pid in self.children():
                if inode is not None and f"socket:[{inode}]" in open_sockets(pid):
                    return pid
            time.sleep(0.01)
        raise AssertionError(f"no worker holds the connection from port {client_port}")

    def clients_on_two_workers(self) -> tuple[httpx.Client, httpx.Client]:
        """Two clients of one kept-alive connection each, served by different workers."""
        first = one_connection(self.url)
        pid = self.worker_of(first)
        for _ in range(300):
            other = one_connection(self.url)
            if self.worker_of(other) != pid:
                return first, other
            other.close()
        first.close()
        raise AssertionError("300 fresh connections all went to the same worker")


def one_connection(url: str) -> httpx.Client:
    return httpx.Client(base_url=url, limits=httpx.Limits(max_connections=1), timeout=30)


def server_socket_inode(server_port: int, client_port: int) -> str | None:
    """The inode of the loopback TCP socket from ``server_port`` to ``client_port``; None
    before it is accepted."""
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        local, remote = fields[1], fields[2]
        if int(local.split(":")[1], 16) == server_port and int(remote.split(":")[1], 16) == (
            client_port
        ):
            return fields[9] if fields[9] != "0" else None
    return None


def open_sockets(pid: int) -> set[str]:
    links = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            links.add(os.readlink(fd))
        except OSError:  # closed meanwhile
            continue
    return links


@pytest.fixture(params=BACKENDS)
def workers(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Workers]:
    server = Workers(tmp_path, request.param, "--log-level", "info", "--sweep-interval", "0.2")
    try:
        server.start()
        yield server
    finally:
        server.stop()


def upload(client: httpx.Client, data: bytes, name: str = "a.txt") -> str:
    files = {"file": (name, data, "text/plain")}
    response = client.post("/v1/files", data={"purpose": "user_data"}, files=files)
    assert response.status_code == 200, response.text
    file_id: str = response.json()["id"]
    return file_id


def test_a_file_uploaded_through_one_worker_is_listed_read_and_deleted_through_another(
    workers: Workers,
) -> None:
    a, b = workers.clients_on_two_workers()
    try:
        file_id = upload(a, DATA * 3)
        assert b.get(f"/v1/files/{file_id}").json()["bytes"] == len(DATA) * 3
        assert [f["id"] for f in b.get("/v1/files").json()["data"]] == [file_id]
        assert b.get(f"/v1/files/{file_id}/content").content == DATA * 3
        assert b.delete(f"/v1/files/{file_id}").json()["deleted"] is True
        assert a.get(f"/v1/files/{file_id}").status_code == 404
        assert a.get("/v1/files").json()["data"] == []
    finally:
        a.close()
        b.close()
    assert "Traceback" not in workers.server.output()


def test_concurrent_operations_over_fresh_connections_all_succeed_on_both_workers(
    workers: Workers,
) -> None:
    def create_read_delete(n: int) -> int:
        with one_connection(workers.url) as client:
            pid = workers.worker_of(client)
            data = DATA * (n + 1)
            file_id = upload(client, data, f"{n}.txt")
        with one_connection(workers.url) as client:
            assert client.get(f"/v1/files/{file_id}/content").content == data
        with one_connection(workers.url) as client:
            assert client.delete(f"/v1/files/{file_id}").json()["deleted"] is True
        return pid

    with ThreadPoolExecutor(8) as pool:
        served_by = list(pool.map(create_read_delete, range(80)))
    assert len(set(served_by)) == 2, "both workers serve"
    assert httpx.get(workers.url + "/v1/files").json()["data"] == []
    output = workers.server.output()
    assert "Traceback" not in output
    assert " 503 " not in output


def test_two_workers_sweep_the_same_expired_files_once_each(workers: Workers) -> None:
    count = 250
    with one_connection(workers.url) as client:
        ids = {upload(client, DATA, f"{n}.txt") for n in range(count)}
    anyio.run(expire_every_file, workers.metadata_url, workers.prefix)
    deadline = time.monotonic() + 60
    while httpx.get(workers.url + "/v1/files", params={"limit": 1}).json()["data"]:
        assert time.monotonic() < deadline, "the sweepers left expired files"
        time.sleep(0.2)
    while sweep_totals(workers.server.output())["removed"] < count:  # reports follow removals
        assert time.monotonic() < deadline, "the sweepers did not report every removal"
        time.sleep(0.2)
    time.sleep(1)  # time for a second, wrong, removal to be reported
    totals = sweep_totals(workers.server.output())
    assert totals == {"expired": count, "removed": count, "failed": 0}
    assert len(ids) == count
    blobs = [p for p in (workers.workdir / "data" / "files").rglob("*") if p.is_file()]
    assert blobs == []
    output = workers.server.output()
    assert "a sweep failed" not in output
    assert "Traceback" not in output


def sweep_totals(output: str) -> dict[str, int]:
    """What the sweep reports of every worker add up to."""
    totals = {"expired": 0, "removed": 0, "failed": 0}
    for fields in re.findall(r"\[\d+\] sweep: SweepReport\((.*?)\)", output):
        for name, value in re.findall(r"(\w+)=(\d+)", fields):
            if name in totals:
                totals[name] += int(value)
    return totals


async def expire_every_file(url: str, prefix: str) -> None:
    engine = create_async_engine(url)
    async with engine.begin() as connection:
        await connection.execute(text(f"UPDATE {prefix}files SET expires_at = 1"))
    await engine.dispose()


def test_the_header_deadline_holds_in_every_worker(tmp_path: Path) -> None:
    server = Workers(tmp_path, "sqlite", "--header-timeout", "1", "--sweep-interval", "0")
    server.start()
    try:
        closed_by = set()
        for _ in range(20):  # rounds of connections that send nothing, until both closed some
            started = time.monotonic()
            with ExitStack() as stack:
                socks = [
                    stack.enter_context(socket.create_connection(("127.0.0.1", server.server.port)))
                    for _ in range(8)
                ]
                holders = [server.worker_holding(sock.getsockname()[1]) for sock in socks]
                for sock in socks:
                    sock.settimeout(10)
                    assert sock.recv(1) == b""
                closed_by.update(holders)
                assert time.monotonic() - started < 5
            if len(closed_by) == 2:
                break
        assert len(closed_by) == 2
    finally:
        server.stop()


def serve_command(port: int, *args: str) -> list[str]:
    return [sys.executable, "-m", "openai_files.cli", "serve", "--port", str(port), *args]


def test_a_worker_that_cannot_start_stops_the_server_with_a_clear_message(
    tmp_path: Path,
) -> None:
    policy = tmp_path / "worker_policy.py"
    policy.write_text(
        "import os\n"
        "from openai_files import Policy\n"
        "if 'OPENAI_FILES_SERVE_SETTINGS' in os.environ:\n"
        "    raise RuntimeError('this policy does not load in a worker')\n"
        "POLICY = Policy()\n"
    )
    command = serve_command(free_port(), "--workers", "2", "--policy", f"{policy}:POLICY")
    finished = subprocess.run(
        command, cwd=tmp_path, capture_output=True, text=True, timeout=60, check=False
    )
    assert finished.returncode == 3
    assert "this policy does not load in a worker" in finished.stderr
    assert "could not start" in finished.stderr
    assert "so every worker was stopped" in finished.stderr
    assert "died" not in finished.stderr  # never restarted


@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_stops_the_parent_and_every_worker(tmp_path: Path, stop: signal.Signals) -> None:
    server = Workers(tmp_path, "sqlite", "--sweep-interval", "0.2")
    server.start()
    try:
        workers = server.children()
        assert len(workers) >= 2
        server.server.process.send_signal(stop)
        assert server.server.process.wait(timeout=30) == 0
        deadline = time.monotonic() + 10
        while any(Path(f"/proc/{pid}").exists() for pid in workers):
            assert time.monotonic() < deadline, "a worker outlived the server"
            time.sleep(0.1)
        output = server.server.output()
        assert output.count("Application shutdown complete") == 2
        assert "Traceback" not in output
    finally:
        server.stop()


def test_the_number_of_workers_comes_from_the_flag_or_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert build_parser().parse_args(["serve"]).workers == 1
    monkeypatch.setenv("OPENAI_FILES_WORKERS", "3")
    assert build_parser().parse_args(["serve"]).workers == 3
    assert build_parser().parse_args(["serve", "--workers", "2"]).workers == 2
    with pytest.raises(SystemExit):
        build_parser().parse_args(["serve", "--workers", "0"])
