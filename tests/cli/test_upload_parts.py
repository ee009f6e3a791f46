"""``openai-files upload`` through the Uploads API: a file larger than the server's
single-request limit goes in parts (on request, or on its own after the server's 413), comes
back byte for byte, and an interrupted upload resumes without sending the finished parts again.
Size errors name the limit the operator set, in one wording."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from starlette.responses import PlainTextResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from openai_files.cli._upload_parts_client import RESUME_SUFFIX

from ..support import ServerProcess, embedded_app, serve, server_process

MB = 1_000_000
MIB = 1024 * 1024
KEY = "sk-parts"


def cli(url: str, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPENAI_")}
    env.update(OPENAI_BASE_URL=url + "/v1", OPENAI_API_KEY=KEY)
    return subprocess.run(
        [sys.executable, "-m", "openai_files.cli", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=env,
        timeout=120,
    )


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServerProcess]:
    args = ["--data-dir", str(tmp_path / "data"), "--max-file-size", str(MB)]
    with server_process(tmp_path, *args, "--api-key", f"{KEY}=team-a") as running:
        yield running


def content_of(server: ServerProcess, file_id: str) -> bytes:
    response = httpx.get(
        f"{server.url}/v1/files/{file_id}/content", headers={"authorization": f"Bearer {KEY}"}
    )
    assert response.status_code == 200, response.text
    return response.content


def parts_received(server: ServerProcess) -> int:
    return server.output().count('/parts HTTP/1.1" 200')


def test_three_megabytes_in_parts_of_one_mebibyte_come_back_identical(
    server: ServerProcess, tmp_path: Path
) -> None:
    data = os.urandom(3 * MB)
    (tmp_path / "big.bin").write_bytes(data)
    done = cli(server.url, "upload", "big.bin", "--purpose", "assistants", "--uploads-api",
               "--part-size", str(MIB), "--json", cwd=tmp_path)  # fmt: skip
    assert done.returncode == 0, done.stderr
    created = json.loads(done.stdout)
    assert created["bytes"] == len(data)
    assert created["filename"] == "big.bin"
    assert hashlib.sha256(content_of(server, created["id"])).digest() == (
        hashlib.sha256(data).digest()
    )
    assert parts_received(server) == 3
    assert not (tmp_path / f"big.bin{RESUME_SUFFIX}").exists()


def test_a_file_over_the_single_request_limit_goes_in_parts_on_its_own(
    server: ServerProcess, tmp_path: Path
) -> None:
    data = os.urandom(3 * MB)
    (tmp_path / "big.bin").write_bytes(data)
    done = cli(server.url, "upload", "big.bin", "--purpose", "assistants", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "the maximum size is 1000000 bytes" in done.stderr
    assert "through the Uploads API" in done.stderr
    assert content_of(server, done.stdout.strip()) == data


def test_an_interrupted_upload_resumes_without_resending_finished_parts(
    server: ServerProcess, tmp_path: Path
) -> None:
    data = os.urandom(3 * MB)
    path = tmp_path / "big.bin"
    path.write_bytes(data)
    record = tmp_path / f"big.bin{RESUME_SUFFIX}"
    # The first run: the upload and two of its three parts, then the connection is lost. The
    # record is what the command leaves after the two parts were sent.
    headers = {"authorization": f"Bearer {KEY}"}
    upload = httpx.post(
        f"{server.url}/v1/uploads",
        headers=headers,
        json={"filename": "big.bin", "purpose": "assistants", "bytes": len(data),
              "mime_type": "application/octet-stream"},
    ).json()  # fmt: skip
    parts = {}
    for number in (0, 2):
        chunk = data[number * MIB : (number + 1) * MIB]
        sent = httpx.post(
            f"{server.url}/v1/uploads/{upload['id']}/parts", headers=headers, files={"data": chunk}
        )
        assert sent.status_code == 200, sent.text
        parts[str(number)] = sent.json()["id"]
    stat = path.stat()
    record.write_text(
        json.dumps(
            {"base_url": f"{server.url}/v1", "upload_id": upload["id"], "size": len(data),
             "mtime_ns": stat.st_mtime_ns, "part_size": MIB, "purpose": "assistants",
             "parts": parts}
        )
    )  # fmt: skip
    before = parts_received(server)

    done = cli(server.url, "upload", "big.bin", "--purpose", "assistants", "--uploads-api",
               "--part-size", str(MIB), cwd=tmp_path)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert f"resuming upload {upload['id']}: 2 of 3 parts sent" in done.stderr
    assert parts_received(server) - before == 1  # only the missing part
    assert content_of(server, done.stdout.strip()) == data
    assert not record.exists()


def test_a_lost_connection_keeps_the_record_and_says_to_run_again(tmp_path: Path) -> None:
    args = ["--data-dir", str(tmp_path / "data"), "--max-file-size", str(MB)]
    (tmp_path / "big.bin").write_bytes(os.urandom(3 * MB))
    with server_process(tmp_path, *args, "--api-key", f"{KEY}=team-a") as server:
        url = server.url
        server.stop()  # gone before the command runs: nothing is sent, nothing recorded
    done = cli(url, "upload", "big.bin", "--purpose", "assistants", "--uploads-api",
               cwd=tmp_path)  # fmt: skip
    assert done.returncode == 1
    assert done.stderr.startswith(f"error: cannot reach {url}/v1")
    assert done.stderr.count("\n") == 1


def test_the_size_errors_name_the_operators_limit_in_one_wording(
    server: ServerProcess, tmp_path: Path
) -> None:
    headers = {"authorization": f"Bearer {KEY}"}
    declared = httpx.post(
        f"{server.url}/v1/files",
        headers=headers,
        files={"file": ("big.bin", os.urandom(3 * MB))},
        data={"purpose": "assistants"},
    )
    chunks = iter([b"x" * MB, b"x" * MB])
    streamed = httpx.post(
        f"{server.url}/v1/files",
        headers={**headers, "content-type": "multipart/form-data; boundary=b"},
        content=_form_without_length(chunks),
    )
    for answer in (declared, streamed):
        assert answer.status_code == 413, answer.text
        message = answer.json()["error"]["message"]
        assert "the maximum size is 1000000 bytes" in message
        assert str(MB + 1024 * 1024) not in message  # never the sum, a number nobody set


def _form_without_length(chunks: Iterator[bytes]) -> Iterator[bytes]:
    """A multipart body sent chunked, so that the server learns its size only as it streams."""
    yield b'--b\r\nContent-Disposition: form-data; name="purpose"\r\n\r\nassistants\r\n'
    yield b'--b\r\nContent-Disposition: form-data; name="file"; filename="a.bin"\r\n\r\n'
    yield from chunks
    yield b"\r\n--b--\r\n"


class FailingParts:
    """The files app, answering 503 to every part after the first ``allowed`` while
    ``failing`` is set, and counting the parts it lets through."""

    def __init__(self, app: ASGIApp, allowed: int) -> None:
        self.app = app
        self.allowed = allowed
        self.failing = True
        self.passed = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"].endswith("/parts"):
            if self.failing and self.passed >= self.allowed:
                await PlainTextResponse("unavailable", status_code=503)(scope, receive, send)
                return
            self.passed += 1
        await self.app(scope, receive, send)


def test_an_upload_cut_off_midway_resumes_from_the_parts_the_server_took(tmp_path: Path) -> None:
    app = FailingParts(embedded_app(tmp_path / "server", {KEY: "team-a"}), allowed=2)
    data = os.urandom(3 * MB)
    (tmp_path / "big.bin").write_bytes(data)
    command = ["upload", "big.bin", "--purpose", "assistants", "--part-size", str(MIB)]
    with serve(app) as server:
        cut = cli(server.url, *command, cwd=tmp_path)
        assert cut.returncode == 1
        assert cut.stderr.endswith("; run the command again to resume (503)\n"), cut.stderr
        record = json.loads((tmp_path / f"big.bin{RESUME_SUFFIX}").read_text())
        assert len(record["parts"]) == 2
        assert KEY not in json.dumps(record)

        app.failing, app.passed = False, 0
        resumed = cli(server.url, *command, cwd=tmp_path)
        assert resumed.returncode == 0, resumed.stderr
        assert "2 of 3 parts sent" in resumed.stderr
        assert app.passed == 1
        response = httpx.get(
            f"{server.url}/v1/files/{resumed.stdout.strip()}/content",
            headers={"authorization": f"Bearer {KEY}"},
        )
        assert response.content == data
    assert not (tmp_path / f"big.bin{RESUME_SUFFIX}").exists()
