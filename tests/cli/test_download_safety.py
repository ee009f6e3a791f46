"""``openai-files download`` never touches a file it did not create: run as a user runs it, a
subprocess against a real server on loopback (this project's, or a hostile one of the test's
own), with the files around it checked byte for byte afterwards."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..support import ServerThread, embedded_app, serve

KEY = "sk-test"
LOCAL = b"LOCAL\n"


def cli(
    url: str, *args: str, cwd: Path, home: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """``openai-files ARGS`` in ``cwd``, with the SDKs' variables pointing at ``url``."""
    env = {**os.environ, "OPENAI_BASE_URL": url + "/v1", "OPENAI_API_KEY": KEY}
    if home is not None:
        env["HOME"] = str(home)
    return subprocess.run(
        [sys.executable, "-m", "openai_files.cli", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=cwd,
        timeout=120,
    )


def tree(root: Path) -> dict[str, bytes | str]:
    """Every entry under ``root``: a file's bytes, a link's target, ``dir`` for a directory."""
    found: dict[str, bytes | str] = {}
    for directory, dirs, files in os.walk(root):
        for name in dirs + files:
            path = Path(directory, name)
            key = str(path.relative_to(root))
            if path.is_symlink():
                found[key] = "-> " + os.readlink(path)
            elif path.is_dir():
                found[key] = "dir"
            else:
                found[key] = path.read_bytes()
    return found


class Cutting:
    """The app, recording the Range and If-Range of every content download with its status
    and ETag, and breaking the connection after ``cut_after`` bytes of a body when set."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.seen: list[tuple[str | None, str | None, int]] = []
        self.etags: list[str | None] = []
        self.cut_after: int | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].endswith("/content"):
            await self.app(scope, receive, send)
            return
        asked = {k.decode(): v.decode() for k, v in scope["headers"]}
        sent = 0

        async def cutting(message: Message) -> None:
            nonlocal sent
            if message["type"] == "http.response.start":
                headers = {k.decode(): v.decode() for k, v in message["headers"]}
                self.seen.append((asked.get("range"), asked.get("if-range"), message["status"]))
                self.etags.append(headers.get("etag"))
            elif self.cut_after is not None and sent + len(message["body"]) > self.cut_after:
                body = message["body"][: self.cut_after - sent]
                await send({"type": "http.response.body", "body": body, "more_body": True})
                raise ConnectionAbortedError("cut by the test")
            else:
                sent += len(message.get("body", b""))
            await send(message)

        await self.app(scope, receive, cutting)


@pytest.fixture
def downloads(tmp_path: Path) -> Cutting:
    return Cutting(embedded_app(tmp_path, {KEY: "tester"}))


@pytest.fixture
def server(downloads: Cutting) -> Iterator[ServerThread]:
    with serve(downloads) as running:
        yield running


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    path = tmp_path / "work"
    path.mkdir()
    return path


def created(server: ServerThread, filename: str, data: bytes) -> str:
    """The id of a file uploaded straight over HTTP."""
    response = httpx.post(
        server.url + "/v1/files",
        headers={"authorization": f"Bearer {KEY}"},
        files={"file": (filename, data)},
        data={"purpose": "assistants"},
    )
    response.raise_for_status()
    file_id: str = response.json()["id"]
    return file_id


def interrupted(server: ServerThread, downloads: Cutting, file_id: str, cwd: Path, at: int) -> None:
    """A download of ``file_id`` to ``out.bin`` in ``cwd`` whose connection breaks after ``at``
    bytes."""
    downloads.cut_after = at
    broken = cli(server.url, "download", file_id, "-o", "out.bin", "--no-progress", cwd=cwd)
    downloads.cut_after = None
    assert broken.returncode == 1, broken.stderr
    assert "run the command again to resume" in broken.stderr


def test_an_unrelated_shorter_file_of_the_same_name_is_left_byte_for_byte(
    server: ServerThread, downloads: Cutting, workdir: Path
) -> None:
    file_id = created(server, "report.txt", b"the server's report, longer than LOCAL")
    (workdir / "report.txt").write_bytes(LOCAL)

    by_name = cli(server.url, "download", file_id, cwd=workdir)
    by_output = cli(server.url, "download", file_id, "-o", "report.txt", cwd=workdir)

    for refused in (by_name, by_output):
        assert refused.returncode == 1
        assert refused.stderr == (
            "error: report.txt already exists: pass --force to overwrite it, or choose another -o\n"
        )
        assert refused.stdout == ""
    assert tree(workdir) == {"report.txt": LOCAL}
    assert downloads.seen == []


def test_force_overwrites_an_existing_file(server: ServerThread, workdir: Path) -> None:
    data = b"the server's report, longer than LOCAL"
    file_id = created(server, "report.txt", data)
    (workdir / "report.txt").write_bytes(LOCAL)

    forced = cli(server.url, "download", file_id, "--force", cwd=workdir)

    assert forced.returncode == 0, forced.stderr
    assert forced.stdout == "report.txt\n"
    assert tree(workdir) == {"report.txt": data}


def test_a_link_at_the_final_name_is_never_followed(
    server: ServerThread, tmp_path: Path, workdir: Path
) -> None:
    data = os.urandom(5000)
    file_id = created(server, "out.bin", data)
    victim = tmp_path / "victim"
    victim.write_bytes(LOCAL)
    (workdir / "out.bin").symlink_to(victim)
    (workdir / "dangling.bin").symlink_to(tmp_path / "created-through-the-link")

    for name in ("out.bin", "dangling.bin"):
        refused = cli(server.url, "download", file_id, "-o", name, cwd=workdir)
        assert refused.returncode == 1
        assert "already exists" in refused.stderr
    forced = cli(server.url, "download", file_id, "-o", "out.bin", "--force", cwd=workdir)

    assert forced.returncode == 0, forced.stderr
    assert not (workdir / "out.bin").is_symlink()
    assert (workdir / "out.bin").read_bytes() == data
    assert victim.read_bytes() == LOCAL
    assert not (tmp_path / "created-through-the-link").exists()


def test_an_interrupted_download_leaves_only_its_side_file_and_resumes_with_if_range(
    server: ServerThread, downloads: Cutting, workdir: Path
) -> None:
    data = os.urandom(1024 * 1024 + 7)
    file_id = created(server, "big.bin", data)

    interrupted(server, downloads, file_id, workdir, at=300_000)

    assert not (workdir / "out.bin").exists()
    assert set(tree(workdir)) == {"out.bin.part", "out.bin.part.json"}
    assert (workdir / "out.bin.part").read_bytes() == data[:300_000]
    resumed = cli(server.url, "download", file_id, "-o", "out.bin", "--no-progress", cwd=workdir)
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming at 300000 bytes" in resumed.stderr
    assert tree(workdir) == {"out.bin": data}
    etag = downloads.etags[0]
    assert etag is not None
    assert downloads.seen == [(None, None, 200), ("bytes=300000-", etag, 206)]


def test_a_partial_download_is_resumed_only_by_the_same_file_id(
    server: ServerThread, downloads: Cutting, workdir: Path
) -> None:
    first, second = os.urandom(200_000), os.urandom(200_000)
    first_id, second_id = created(server, "a.bin", first), created(server, "b.bin", second)
    interrupted(server, downloads, first_id, workdir, at=70_000)
    partial = tree(workdir)

    other = cli(server.url, "download", second_id, "-o", "out.bin", cwd=workdir)

    assert other.returncode == 1
    assert f"out.bin.part is not a partial download of {second_id}" in other.stderr
    assert tree(workdir) == partial
    assert len(downloads.seen) == 1
    forced = cli(server.url, "download", second_id, "-o", "out.bin", "--force", cwd=workdir)
    assert forced.returncode == 0, forced.stderr
    assert tree(workdir) == {"out.bin": second}
    assert downloads.seen[-1] == (None, None, 200)


def test_a_file_of_the_users_at_the_side_files_name_is_left_alone(
    server: ServerThread, downloads: Cutting, tmp_path: Path, workdir: Path
) -> None:
    file_id = created(server, "out.bin", os.urandom(100_000))
    (workdir / "out.bin.part").write_bytes(LOCAL)
    mine = tree(workdir)

    refused = cli(server.url, "download", file_id, "-o", "out.bin", cwd=workdir)

    assert refused.returncode == 1
    assert "out.bin.part is not a partial download" in refused.stderr
    assert tree(workdir) == mine
    assert downloads.seen == []


def test_a_link_put_at_the_side_files_name_is_never_followed(
    server: ServerThread, downloads: Cutting, tmp_path: Path, workdir: Path
) -> None:
    data = os.urandom(100_000)
    file_id = created(server, "out.bin", data)
    interrupted(server, downloads, file_id, workdir, at=1000)
    victim = tmp_path / "victim"
    victim.write_bytes(LOCAL)
    (workdir / "out.bin.part").unlink()
    (workdir / "out.bin.part").symlink_to(victim)

    refused = cli(server.url, "download", file_id, "-o", "out.bin", cwd=workdir)
    forced = cli(server.url, "download", file_id, "-o", "out.bin", "--force", cwd=workdir)

    assert refused.returncode == 1
    assert "out.bin.part is not a partial download" in refused.stderr
    assert forced.returncode == 0, forced.stderr
    assert victim.read_bytes() == LOCAL
    assert tree(workdir) == {"out.bin": data}


HOSTILE_ID = "file-hostile"


def hostile_server_app(filename: str, data: bytes, declared: int | None = None) -> Starlette:
    """A server with one file named ``filename``, whose content is ``data`` streamed without
    a length, and which declares ``declared`` bytes (``len(data)`` unless given)."""

    async def file(request: Request) -> Response:
        return JSONResponse(
            {"id": HOSTILE_ID, "object": "file", "created_at": 0, "filename": filename,
             "bytes": len(data) if declared is None else declared, "purpose": "assistants",
             "status": "processed", "status_details": None, "expires_at": None}
        )  # fmt: skip

    async def content(request: Request) -> Response:
        async def chunks() -> AsyncIterator[bytes]:
            for start in range(0, len(data), 65536):
                yield data[start : start + 65536]

        return StreamingResponse(chunks(), media_type="application/octet-stream")

    return Starlette(
        routes=[
            Route(f"/v1/files/{HOSTILE_ID}", file),
            Route(f"/v1/files/{HOSTILE_ID}/content", content),
        ]
    )


@pytest.mark.parametrize(
    ("filename", "written"),
    [
        (".bashrc", "_.bashrc"),
        ("../x", "x"),
        ("../../.bashrc", "_.bashrc"),
        ("/etc/passwd", "passwd"),
        ("a/b", "b"),
        ("..\\..\\.profile", "_.profile"),
        ("~/.ssh/authorized_keys", "authorized_keys"),
        ("x\x1b[2J\r\n\x00\x07y.txt", "x[2Jy.txt"),
        ("\u202etxt.exe", "txt.exe"),
        (" .hidden ", "_.hidden"),
        ("..", HOSTILE_ID),
        ("", HOSTILE_ID),
    ],
)
def test_a_hostile_servers_filename_writes_one_visible_file_in_the_directory(
    tmp_path: Path, filename: str, written: str
) -> None:
    home = tmp_path / "home"
    (home / ".ssh").mkdir(parents=True)
    (home / ".bashrc").write_bytes(LOCAL)
    (home / ".profile").write_bytes(LOCAL)
    (tmp_path / "x").write_bytes(LOCAL)
    before = tree(tmp_path)
    data = b"echo pwned\n" * 1000

    with serve(hostile_server_app(filename, data)) as hostile:
        fetched = cli(hostile.url, "download", HOSTILE_ID, "--no-progress", cwd=home, home=home)

    assert fetched.returncode == 0, fetched.stderr
    assert fetched.stdout == written + "\n"
    assert tree(tmp_path) == {**before, f"home/{written}": data}


def test_a_server_that_sends_more_than_the_file_leaves_no_file_at_the_name(
    workdir: Path,
) -> None:
    with serve(hostile_server_app("big.bin", os.urandom(1024 * 1024), declared=10)) as hostile:
        fetched = cli(hostile.url, "download", HOSTILE_ID, "--no-progress", cwd=workdir)

    assert fetched.returncode == 1
    assert fetched.stderr == "error: the server sent more than the file's 10 bytes\n"
    assert not (workdir / "big.bin").exists()
    assert len((workdir / "big.bin.part").read_bytes()) <= 10
    assert json.loads((workdir / "big.bin.part.json").read_text())["file_id"] == HOSTILE_ID


def test_the_side_files_record_is_json_of_the_id_size_and_etag(
    server: ServerThread, downloads: Cutting, workdir: Path
) -> None:
    file_id = created(server, "out.bin", os.urandom(100_000))
    interrupted(server, downloads, file_id, workdir, at=1000)
    record: dict[str, Any] = json.loads((workdir / "out.bin.part.json").read_text())
    assert record == {"file_id": file_id, "bytes": 100_000, "etag": downloads.etags[0]}
