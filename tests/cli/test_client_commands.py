"""The client commands of `openai-files` (upload, list, get, download, delete), run as a user
runs them: a subprocess against a real server on loopback."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shlex
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from openai_files.cli._client_commands import safe_filename

from ..support import ServerThread, embedded_app, free_port, requires_tool, serve, server_process

KEY = "sk-test"
SHELL = ("bash", "--norc", "--noprofile")
ISO_UTC = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ")


def cli(
    url: str, *args: str, key: str = KEY, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """``openai-files ARGS`` with the SDKs' environment variables pointing at ``url``."""
    env = {**os.environ, "OPENAI_BASE_URL": url + "/v1", "OPENAI_API_KEY": key}
    return subprocess.run(
        [sys.executable, "-m", "openai_files.cli", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=cwd,
        timeout=120,
    )


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class ContentRequests:
    """The app, recording the Range header and the status of every content download, and
    pausing ``delay`` seconds before each part of a download's body (a slow network)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.seen: list[tuple[str | None, int]] = []
        self.delay = 0.0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].endswith("/content"):
            await self.app(scope, receive, send)
            return
        asked = dict(scope["headers"]).get(b"range")

        async def recording(message: Message) -> None:
            if message["type"] == "http.response.start":
                self.seen.append((asked.decode() if asked else None, message["status"]))
            elif self.delay:
                await anyio.sleep(self.delay)
            await send(message)

        await self.app(scope, receive, recording)


@pytest.fixture
def downloads(tmp_path: Path) -> ContentRequests:
    return ContentRequests(embedded_app(tmp_path, {KEY: "tester"}))


@pytest.fixture
def server(downloads: ContentRequests) -> Iterator[ServerThread]:
    with serve(downloads) as running:
        yield running


def upload(url: str, path: Path, *flags: str) -> dict[str, Any]:
    done = cli(url, "upload", str(path), "--purpose", "assistants", "--json", *flags)
    assert done.returncode == 0, done.stderr
    created: dict[str, Any] = json.loads(done.stdout)
    return created


def created(server: ServerThread, filename: str, data: bytes) -> dict[str, Any]:
    """A file uploaded straight over HTTP, for tests of the other commands."""
    response = httpx.post(
        server.url + "/v1/files",
        headers={"authorization": f"Bearer {KEY}"},
        files={"file": (filename, data)},
        data={"purpose": "assistants"},
    )
    response.raise_for_status()
    answer: dict[str, Any] = response.json()
    return answer


def test_upload_list_get_download_delete_against_openai_files_serve(tmp_path: Path) -> None:
    data = os.urandom(300_000)
    (tmp_path / "report.bin").write_bytes(data)
    with server_process(tmp_path, "--metadata", "memory://", "--storage", "memory://") as server:
        url = server.url
        uploaded = cli(url, "upload", str(tmp_path / "report.bin"), "--purpose", "assistants")
        file_id = uploaded.stdout.strip()
        assert uploaded.returncode == 0, uploaded.stderr
        assert re.fullmatch(r"file-\w+", file_id)

        table = cli(url, "list").stdout.splitlines()
        assert table[0].split() == [
            "id", "filename", "bytes", "purpose", "status", "created_at", "expires_at"
        ]  # fmt: skip
        row = table[1].split()
        assert row[:5] == [file_id, "report.bin", str(len(data)), "assistants", "processed"]
        assert ISO_UTC.fullmatch(row[5])
        assert row[6] == "-"

        shown = json.loads(cli(url, "get", file_id, "--json").stdout)
        assert (shown["id"], shown["bytes"], shown["filename"]) == (
            file_id,
            len(data),
            "report.bin",
        )
        assert "filename    report.bin" in cli(url, "get", file_id).stdout.splitlines()

        fetched = cli(url, "download", file_id, "-o", str(tmp_path / "copy.bin"))
        assert fetched.returncode == 0, fetched.stderr
        assert fetched.stdout.strip() == str(tmp_path / "copy.bin")
        assert sha256((tmp_path / "copy.bin").read_bytes()) == sha256(data)

        deleted = cli(url, "delete", file_id)
        assert (deleted.returncode, deleted.stdout) == (0, f"deleted {file_id}\n")
        gone = cli(url, "get", file_id)
    assert gone.returncode == 1
    assert gone.stderr == f"error: No such File object: {file_id} (404)\n"
    assert gone.stdout == ""


def test_upload_json_prints_the_file_object_with_its_expiry(
    server: ServerThread, tmp_path: Path
) -> None:
    (tmp_path / "notes.txt").write_text("hello")
    created = upload(server.url, tmp_path / "notes.txt", "--expires-after", "3600")
    assert (created["object"], created["filename"], created["bytes"]) == ("file", "notes.txt", 5)
    assert created["expires_at"] - created["created_at"] == 3600


def test_list_pages_with_limit_and_all_follows_every_page(
    server: ServerThread, tmp_path: Path
) -> None:
    ids = {created(server, f"f{n}.txt", str(n).encode())["id"] for n in range(5)}

    one_page = cli(server.url, "list", "--limit", "2", "--json")
    assert len(one_page.stdout.splitlines()) == 2
    every = cli(server.url, "list", "--limit", "2", "--all", "--json", "--order", "asc")
    listed = [json.loads(line) for line in every.stdout.splitlines()]
    assert {f["id"] for f in listed} == ids
    assert [f["filename"] for f in listed] == [f"f{n}.txt" for n in range(5)]

    table = cli(server.url, "list", "--limit", "2", "--all")
    assert len(table.stdout.splitlines()) == 1 + 5
    partial = cli(server.url, "list", "--limit", "2")
    assert len(partial.stdout.splitlines()) == 1 + 2
    assert "--all" in partial.stderr


def test_download_defaults_to_the_filename_kept_inside_the_current_directory(
    server: ServerThread, tmp_path: Path
) -> None:
    file = created(server, "../../escape.txt", b"contained")
    assert file["filename"] == "../../escape.txt"
    workdir = tmp_path / "a" / "b"
    workdir.mkdir(parents=True)

    fetched = cli(server.url, "download", file["id"], "--no-progress", cwd=workdir)

    assert fetched.returncode == 0, fetched.stderr
    assert (workdir / "escape.txt").read_bytes() == b"contained"
    assert not (tmp_path / "escape.txt").exists()


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("report.jsonl", "report.jsonl"),
        ("../../etc/passwd", "passwd"),
        ("C:\\Users\\me\\data.csv", "data.csv"),
        ("dir/", "dir"),
        ("..", "file-abc"),
        ("", "file-abc"),
        ("a\x1b[2Jb\n.txt", "a[2Jb.txt"),
        (".bashrc", "_.bashrc"),
        ("é" * 200, "é" * 122),
    ],
)
def test_safe_filename_never_leaves_the_directory(name: str, expected: str) -> None:
    assert safe_filename(name, "file-abc") == expected


def test_a_wrong_api_key_exits_1_with_the_servers_401_message(server: ServerThread) -> None:
    refused = cli(server.url, "list", key="sk-wrong")
    assert refused.returncode == 1
    assert refused.stderr == "error: Incorrect API key provided. (401)\n"


def test_an_unreachable_base_url_exits_1_with_one_line(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    failed = cli(url, "get", "file-abc")
    assert failed.returncode == 1
    assert failed.stderr.startswith(f"error: cannot reach {url}/v1: ")
    assert failed.stderr.count("\n") == 1


def test_flags_win_over_the_environment(server: ServerThread) -> None:
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    listed = cli(url, "list", "--base-url", server.url + "/v1/", "--api-key", KEY)
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout.startswith("id ")


def test_usage_errors_exit_2(server: ServerThread, tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("a")
    assert cli(server.url, "upload", str(tmp_path / "a.txt")).returncode == 2  # no --purpose
    assert cli(server.url, "list", "--limit", "0").returncode == 2
    assert cli(server.url, "list", "--order", "sideways").returncode == 2


def test_an_unreadable_file_and_a_server_error_are_one_line_each(
    server: ServerThread, tmp_path: Path
) -> None:
    missing = cli(server.url, "upload", str(tmp_path / "nope.txt"), "--purpose", "assistants")
    assert (missing.returncode, missing.stderr.count("\n")) == (1, 1)
    assert "nope.txt" in missing.stderr
    (tmp_path / "a.txt").write_text("a")
    refused = cli(server.url, "upload", str(tmp_path / "a.txt"), "--purpose", "bogus")
    assert refused.returncode == 1
    assert re.fullmatch(r"error: .*'bogus'.* \(400\)\n", refused.stderr)


def bare_server_app(data: bytes) -> Starlette:
    """A server with one file, which ignores Range, breaks the first download of it after
    1000 bytes, and answers errors as HTML."""

    async def file(request: Request) -> Response:
        return JSONResponse(
            {"id": "file-1", "object": "file", "bytes": len(data), "created_at": 0,
             "filename": "plain.bin", "purpose": "assistants", "status": "processed",
             "status_details": None, "expires_at": None}
        )  # fmt: skip

    served: list[int] = []

    async def content(request: Request) -> Response:
        served.append(1)
        if len(served) > 1:
            return Response(data, media_type="application/octet-stream")

        async def cut() -> AsyncIterator[bytes]:  # the first download breaks at 1000 bytes
            yield data[:1000]
            raise ConnectionAbortedError("cut by the test")

        return StreamingResponse(cut(), media_type="application/octet-stream")

    async def broken(request: Request) -> Response:
        return PlainTextResponse("<html>\n<h1>Bad Gateway</h1>\n</html>", status_code=502)

    return Starlette(
        routes=[
            Route("/v1/files/file-1", file),
            Route("/v1/files/file-1/content", content),
            Route("/v1/files/broken", broken),
        ]
    )


def test_a_server_that_ignores_ranges_sends_the_whole_file_again(tmp_path: Path) -> None:
    data = os.urandom(100_000)
    target = tmp_path / "plain.bin"
    with serve(bare_server_app(data)) as bare:
        interrupted = cli(bare.url, "download", "file-1", "-o", str(target))
        fetched = cli(bare.url, "download", "file-1", "-o", str(target))
        broken = cli(bare.url, "get", "broken")
    assert interrupted.returncode == 1
    assert "resume" in interrupted.stderr
    assert fetched.returncode == 0, fetched.stderr
    assert "from the start" in fetched.stderr
    assert target.read_bytes() == data
    assert sorted(tmp_path.iterdir()) == [target]
    assert broken.returncode == 1
    assert broken.stderr == "error: <html> <h1>Bad Gateway</h1> </html> (502)\n"


@requires_tool("script", "from util-linux, for a pty")
def test_the_progress_bar_shows_in_a_terminal_only(server: ServerThread, tmp_path: Path) -> None:
    (tmp_path / "shown.bin").write_bytes(os.urandom(2 * 1024 * 1024))
    command = [sys.executable, "-m", "openai_files.cli", "upload", str(tmp_path / "shown.bin")]
    command += ["--purpose", "assistants"]
    env = {
        **os.environ,
        "OPENAI_BASE_URL": server.url + "/v1",
        "OPENAI_API_KEY": KEY,
        "COLUMNS": "120",
    }

    def in_terminal(*flags: str) -> str:
        line = shlex.join([*command, *flags])
        done = subprocess.run(
            ["script", "-qec", line, "/dev/null"],
            capture_output=True,
            text=True,
            env=env,
            stdin=subprocess.DEVNULL,
            timeout=120,
        )
        assert done.returncode == 0, done.stdout + done.stderr
        return done.stdout

    shown = in_terminal()
    assert "shown.bin" in shown
    assert "100%" in shown
    assert "100%" not in in_terminal("--no-progress")
    piped = subprocess.run(command, capture_output=True, text=True, env=env, timeout=120)
    assert piped.returncode == 0
    assert piped.stderr == ""
    assert re.fullmatch(r"file-\w+\n", piped.stdout)


class Tmux:
    """A shell in a detached tmux session on its own socket, driven as a user types."""

    def __init__(self, socket: Path, env: dict[str, str]) -> None:
        self.base = ["tmux", "-S", str(socket)]
        self.commands = 0
        self.typed = ""
        variables = [flag for name, value in env.items() for flag in ("-e", f"{name}={value}")]
        subprocess.run(
            [*self.base, "new-session", "-d", "-x", "120", "-y", "50", *variables, *SHELL],
            check=True,
            env={**os.environ, "PS1": "$ "},
        )

    def run(self, line: str) -> str:
        """Type ``line``, wait for it to finish and return what the screen then shows from the
        line on; the command must exit 0."""
        self.type(line)
        return self.finished(0)

    def type(self, line: str) -> None:
        """Type ``line`` on a clear screen, and Enter."""
        self.commands += 1
        self.typed = f"{line}; echo exit-{self.commands}=$?"
        subprocess.run([*self.base, "send-keys", "clear", "Enter"], check=True)
        subprocess.run([*self.base, "send-keys", self.typed, "Enter"], check=True)

    def interrupt(self) -> None:
        """Press Ctrl-C."""
        subprocess.run([*self.base, "send-keys", "C-c"], check=True)

    def finished(self, status: int) -> str:
        """What the screen shows from the last typed line on, once it has exited with
        ``status``."""
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            screen = subprocess.run(
                [*self.base, "capture-pane", "-p", "-J"], capture_output=True, text=True
            ).stdout
            shown = screen.split(self.typed, 1)[-1]
            exited = re.search(rf"^exit-{self.commands}=(\d+)$", shown, re.MULTILINE)
            if exited:
                assert exited[1] == str(status), screen
                return shown
            time.sleep(0.1)
        raise AssertionError(f"{self.typed!r} did not finish")

    def close(self) -> None:
        subprocess.run([*self.base, "kill-server"], capture_output=True)


@requires_tool("tmux", "for a real terminal")
def test_a_session_in_a_real_terminal_shows_progress_and_resumes_a_download(
    server: ServerThread, downloads: ContentRequests, tmp_path: Path
) -> None:
    data = os.urandom(24 * 1024 * 1024)
    (tmp_path / "big.bin").write_bytes(data)
    env = {"OPENAI_BASE_URL": server.url + "/v1", "OPENAI_API_KEY": KEY, "PS1": "$ "}
    command = shlex.join([sys.executable, "-m", "openai_files.cli"])
    terminal = Tmux(tmp_path / "tmux.sock", env)
    try:
        terminal.run(f"cd {shlex.quote(str(tmp_path))}")
        shown = terminal.run(f"{command} upload big.bin --purpose assistants")
        assert re.search(r"big\.bin.*100%", shown), shown
        file_id = re.findall(r"file-\w+", shown)[-1]

        assert file_id in terminal.run(f"{command} list")

        shown = terminal.run(f"{command} download {file_id} -o copy.bin")
        assert re.search(r"100%", shown), shown
        assert (tmp_path / "copy.bin").read_bytes() == data

        # A slow download, interrupted with Ctrl-C part of the way, then resumed.
        downloads.delay = 0.1
        partial, side = tmp_path / "partial.bin", tmp_path / "partial.bin.part"
        terminal.type(f"{command} download {file_id} -o partial.bin")
        deadline = time.monotonic() + 60
        while (side.stat().st_size if side.exists() else 0) < 2 * 1024 * 1024:
            assert time.monotonic() < deadline, "the download did not start"
            time.sleep(0.05)
        terminal.interrupt()
        terminal.finished(130)
        had = side.stat().st_size
        assert 0 < had < len(data)
        assert not partial.exists()  # the name is taken only when the download is complete
        downloads.delay = 0.0
        shown = terminal.run(f"{command} download {file_id} -o partial.bin")
        assert f"resuming at {had} bytes" in shown
        assert partial.read_bytes() == data
        assert not side.exists()
        assert downloads.seen[-1] == (f"bytes={had}-", 206)

        assert f"deleted {file_id}" in terminal.run(f"{command} delete {file_id}")
        assert file_id not in terminal.run(f"{command} list")
    finally:
        terminal.close()


def test_importing_the_command_line_module_does_not_import_rich() -> None:
    code = "import sys, openai_files, openai_files.cli; print('rich' in sys.modules)"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "False"


def test_the_client_works_against_the_files_app_mounted_in_the_fastapi_gateway(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_FILES_DATA_DIR", str(tmp_path / "gateway"))
    monkeypatch.syspath_prepend(str(Path(__file__).parents[2] / "examples"))
    sys.modules.pop("fastapi_gateway", None)
    import fastapi_gateway

    data = os.urandom(300_000)
    source = tmp_path / "notes.bin"
    source.write_bytes(data)
    with serve(fastapi_gateway.app) as gateway:
        made = cli(gateway.url, "upload", str(source), "--purpose", "assistants", key="sk-team-a")
        assert made.returncode == 0, made.stderr
        file_id = made.stdout.strip()
        listed = cli(gateway.url, "list", "--json", key="sk-team-a")
        assert file_id in listed.stdout
        other = cli(gateway.url, "get", file_id, key="sk-team-b")
        assert other.returncode == 1
        assert "No such File object" in other.stderr
        target = tmp_path / "copy.bin"
        fetched = cli(gateway.url, "download", file_id, "-o", str(target), key="sk-team-a")
        assert fetched.returncode == 0, fetched.stderr
        assert sha256(target.read_bytes()) == sha256(data)
        assert cli(gateway.url, "delete", file_id, key="sk-team-a").returncode == 0
    sys.modules.pop("fastapi_gateway", None)
