"""The quickstart as a newcomer runs it: the server ``make serve`` starts, then the page's curl
commands, then the command-line client (upload, list, get, download, delete) and
``make quickstart``, each exactly as docs/quickstart.md and the README write them, with only
the port changed (tests run in parallel) and ``FILE_ID`` replaced by the id just created."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from ..support import server_process
from .test_docs_examples import code_blocks

ROOT = Path(__file__).resolve().parents[2]
QUICKSTART = ROOT / "docs" / "quickstart.md"
LOCAL = "127.0.0.1:8000"


def console_blocks_with(text: str) -> list[list[str]]:
    return [
        block.lines
        for block in code_blocks(QUICKSTART)
        if block.language == "console" and any(text in line for line in block.lines)
    ]


def run(line: str, port: int, cwd: Path) -> subprocess.CompletedProcess[str]:
    """``line`` in bash, its server moved to ``port`` and ``.venv/bin`` pointing at this
    interpreter's, with no ``OPENAI_*`` variable set."""
    line = line.replace(LOCAL, f"127.0.0.1:{port}")
    line = line.replace(".venv/bin/openai-files", str(Path(sys.executable).parent / "openai-files"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPENAI_")}
    return subprocess.run(
        ["bash", "-c", line], capture_output=True, text=True, cwd=cwd, env=env, timeout=120
    )


def test_the_quickstarts_curl_commands_work_as_written(tmp_path: Path) -> None:
    (curl,) = console_blocks_with("curl ")
    assert curl[0].startswith("echo ")  # makes the file it sends
    assert "notes.txt" in curl[0]
    work = tmp_path / "work"
    work.mkdir()
    with server_process(tmp_path, "--data-dir", str(tmp_path / "data")) as server:
        file_id = ""
        for line in curl:
            done = run(line.replace("FILE_ID", file_id), server.port, work)
            assert done.returncode == 0, (line, done.stderr)
            if "-F purpose" in line:
                file_id = json.loads(done.stdout)["id"]
            if "?limit=10" in line:
                assert [f["id"] for f in json.loads(done.stdout)["data"]] == [file_id]
            if line.strip().startswith("curl -s -X DELETE"):
                assert json.loads(done.stdout)["deleted"] is True
        assert (work / "copy.txt").read_text() == "hello\n"


def test_the_command_line_client_needs_no_variable_after_make_serve(tmp_path: Path) -> None:
    (client,) = console_blocks_with(".venv/bin/openai-files upload")
    work = tmp_path / "work"
    work.mkdir()
    (work / "notes.txt").write_text("hello\n")
    # The client's default is http://127.0.0.1:8000/v1: the commands, with their port moved,
    # name the server by --base-url only because the test's server is on another port.
    with server_process(tmp_path, "--data-dir", str(tmp_path / "data")) as server:
        file_id = ""
        for line in client:
            command = line.split("#")[0].strip().replace("FILE_ID", file_id)
            command += f" --base-url http://{LOCAL}/v1"
            done = run(command, server.port, work)
            assert done.returncode == 0, (line, done.stderr)
            if " upload " in command:
                file_id = done.stdout.strip()
                assert re.fullmatch(r"file-\w+", file_id)
            if command.split()[1:2] == ["list"]:
                assert file_id in done.stdout
        assert (work / "copy.txt").read_text() == "hello\n"
        assert f"deleted {file_id}" in done.stdout


@pytest.mark.skipif(shutil.which("make") is None, reason="needs make")
def test_make_quickstart_runs_the_sdk_example_against_make_serve(tmp_path: Path) -> None:
    (block,) = console_blocks_with("make quickstart")
    assert block == ["make quickstart"]
    venv = Path(sys.executable).parent.parent
    with server_process(tmp_path, "--data-dir", str(tmp_path / "data")) as server:
        env = {k: v for k, v in os.environ.items() if not k.startswith("OPENAI_")}
        done = subprocess.run(
            ["make", "-C", str(ROOT), "quickstart", f"PORT={server.port}", f"VENV={venv}"],
            capture_output=True,
            text=True,
            env=env,
            timeout=300,
        )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "intact; deleted it" in done.stdout
