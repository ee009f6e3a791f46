"""``openai-files serve`` as an operator runs it: request ids in JSON access lines, metrics on
by default, probes, the admin view (and ``openai-files admin usage``), a bounded graceful
shutdown."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import anyio
import httpx

from openai_files import SQLMetadataStore
from openai_files.metadata.base import Usage

from ..support import server_process, stored_files

ADMIN_KEY = "sk-admin-0123456789abcdef"


def access_lines(output: str) -> list[dict[str, object]]:
    lines = [json.loads(line) for line in output.splitlines() if line.startswith("{")]
    return [line for line in lines if line["logger"] == "openai_files.access"]


def test_a_request_id_is_echoed_and_written_in_a_json_access_line(tmp_path: Path) -> None:
    args = ("--storage", "memory://", "--metadata", "memory://", "--log-format", "json")
    with server_process(tmp_path, *args) as server:
        given = httpx.get(server.url + "/v1/files/file-nosuch", headers={"X-Request-ID": "abc"})
        fresh = httpx.get(server.url + "/v1/files")
        other = httpx.get(server.url + "/v1/files")
    assert given.headers["x-request-id"] == "abc"
    assert fresh.headers["x-request-id"]
    assert fresh.headers["x-request-id"] != other.headers["x-request-id"]
    lines = access_lines(server.output())
    mine = [line for line in lines if line["request_id"] == "abc"]
    assert len(mine) == 1
    assert mine[0]["status"] == 404
    assert mine[0]["path"] == "/v1/files/{file_id}"
    assert mine[0]["method"] == "GET"
    assert mine[0]["owner"] == "default"
    assert {"duration_ms", "bytes_in", "bytes_out"} <= set(mine[0])
    assert any(line["request_id"] == fresh.headers["x-request-id"] for line in lines)
    assert "file-nosuch" not in json.dumps(lines)


def test_metrics_and_probes_are_served_by_default_and_metrics_can_be_turned_off(
    tmp_path: Path,
) -> None:
    args = ("--storage", "memory://", "--metadata", "memory://")
    with server_process(tmp_path, *args) as server:
        httpx.post(
            server.url + "/v1/files", files={"file": ("a", b"12345")}, data={"purpose": "vision"}
        )
        metrics = httpx.get(server.url + "/metrics")
        health = httpx.get(server.url + "/healthz")
        ready = httpx.get(server.url + "/readyz")
    assert metrics.status_code == 200
    assert "openai_files_uploaded_bytes_total 5.0" in metrics.text
    timed = "openai_files_backend_operation_duration_seconds_count"
    timed += '{backend="metadata",operation="insert_inline"}'  # 5 bytes: kept with the record
    assert f"{timed} 1.0" in metrics.text
    assert (health.status_code, ready.status_code) == (200, 200)
    with server_process(tmp_path, *args, "--no-metrics") as server:
        assert httpx.get(server.url + "/metrics").status_code == 404
        assert httpx.get(server.url + "/readyz").status_code == 200


def test_the_admin_key_opens_usage_to_the_admin_command_and_nothing_else(tmp_path: Path) -> None:
    args = ("--storage", "memory://", "--metadata", "memory://", "--api-key", "sk-team=team")
    env = {"OPENAI_FILES_ADMIN_KEY": ADMIN_KEY}
    with server_process(tmp_path, *args, env=env) as server:
        team = {"Authorization": "Bearer sk-team"}
        for size in (3, 4):
            httpx.post(
                server.url + "/v1/files",
                files={"file": ("a", b"x" * size)},
                data={"purpose": "vision"},
                headers=team,
            )
        refused = httpx.get(server.url + "/admin/usage", headers=team)
        command = [sys.executable, "-m", "openai_files.cli", "admin", "usage", "--json"]
        done = subprocess.run(
            [*command, "--url", server.url + "/v1"],
            env={**os.environ, "OPENAI_FILES_ADMIN_KEY": ADMIN_KEY},
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert refused.status_code == 401
    assert done.returncode == 0, done.stderr
    assert [json.loads(line) for line in done.stdout.splitlines()] == [
        {"owner": "team", "files": 2, "bytes": 7, "open_uploads": 0}
    ]
    with server_process(tmp_path, *args) as server:
        assert (
            httpx.get(
                server.url + "/admin/usage", headers={"Authorization": f"Bearer {ADMIN_KEY}"}
            ).status_code
            == 404
        )


def test_an_admin_key_that_is_also_an_api_key_stops_serve(tmp_path: Path) -> None:
    command = [sys.executable, "-m", "openai_files.cli", "serve", "--api-key", ADMIN_KEY]
    done = subprocess.run(
        [*command, "--admin-key", ADMIN_KEY],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert done.returncode == 2
    assert "the admin key is also an API key" in done.stderr
    assert ADMIN_KEY not in done.stderr


class SlowUpload:
    """A multipart upload sent from a thread: the head and a first chunk at once, then one
    chunk every ``pause`` seconds; its answer (or the error that ended it) once done."""

    def __init__(self, url: str, *, chunks: int, pause: float) -> None:
        self.url, self.chunks, self.pause = url, chunks, pause
        self.sent_first = threading.Event()
        self.answer: httpx.Response | None = None
        self.error: Exception | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _body(self) -> Iterator[bytes]:
        boundary = "slowboundary"
        yield (
            f'--{boundary}\r\nContent-Disposition: form-data; name="purpose"\r\n\r\nvision\r\n'
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="slow.bin"\r\n'
            "Content-Type: application/octet-stream\r\n\r\n"
        ).encode()
        for n in range(self.chunks):
            yield b"s" * 1024
            if n == 0:
                self.sent_first.set()
            time.sleep(self.pause)
        yield f"\r\n--{boundary}--\r\n".encode()

    def _run(self) -> None:
        headers = {"content-type": "multipart/form-data; boundary=slowboundary"}
        try:
            self.answer = httpx.post(
                self.url + "/v1/files", content=self._body(), headers=headers, timeout=60
            )
        except Exception as exc:
            self.error = exc


def terminate_during(
    server_url: str, process: subprocess.Popen[bytes], upload: SlowUpload
) -> float:
    """SIGTERM once the upload's first chunk is out; seconds until the process exits."""
    assert upload.sent_first.wait(20)
    time.sleep(0.3)  # the chunk reaches the server, the upload is under way
    started = time.monotonic()
    process.send_signal(signal.SIGTERM)
    process.wait(timeout=60)
    return time.monotonic() - started


def test_sigterm_lets_an_upload_that_fits_in_the_bound_finish(tmp_path: Path) -> None:
    with server_process(tmp_path, "--graceful-timeout", "20") as server:
        upload = SlowUpload(server.url, chunks=4, pause=0.5)
        terminate_during(server.url, server.process, upload)
        upload.thread.join(30)
    assert server.process.returncode in (0, -signal.SIGTERM)  # uvicorn re-raises the signal
    assert upload.answer is not None, upload.error
    assert upload.answer.status_code == 200
    assert upload.answer.json()["bytes"] == 4 * 1024


def test_sigterm_cuts_an_upload_past_the_bound_cleans_it_and_exits_in_time(tmp_path: Path) -> None:
    bound = 2.0
    with server_process(tmp_path, "--graceful-timeout", str(bound)) as server:
        upload = SlowUpload(server.url, chunks=100, pause=0.5)
        took = terminate_during(server.url, server.process, upload)
        upload.thread.join(60)
    assert took < bound + 1, server.output()
    assert upload.answer is None or upload.answer.status_code >= 500
    assert stored_files(tmp_path / "data" / "files") == []

    async def usage() -> Usage:
        store = SQLMetadataStore(f"sqlite+aiosqlite:///{tmp_path / 'data' / 'files.db'}")
        try:
            return await store.usage("default")
        finally:
            await store.aclose()

    assert anyio.run(usage) == Usage(files=0, bytes=0)


def test_metrics_of_every_worker_are_added_up_whichever_answers(tmp_path: Path) -> None:
    args = ("--workers", "2", "--storage", "memory://", "--metadata", "sqlite+aiosqlite:///f.db")
    with server_process(tmp_path, *args) as server:
        for size in (5, 6, 7, 8):
            created = httpx.post(
                server.url + "/v1/files",
                files={"file": ("a", b"w" * size)},
                data={"purpose": "vision"},
                headers={"Connection": "close"},  # a new connection each: any worker
            )
            assert created.status_code == 200
        scrapes = [
            httpx.get(server.url + "/metrics", headers={"Connection": "close"}).text
            for _ in range(6)
        ]
    assert all("openai_files_uploaded_bytes_total 26.0" in text for text in scrapes)
