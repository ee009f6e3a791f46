"""What the client commands do before any flag or variable is set: they talk to the local
``openai-files serve`` (never a hosted API), name any other server in a terminal, and import
only what a client needs, so ``--help`` and ``list`` start at once."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from openai_files.cli import build_parser
from openai_files.cli._api_client import Connection, ConnectionFailed
from openai_files.cli._client_commands import _with_hint

from ..support import ServerThread, embedded_app, serve

LOCAL = "http://127.0.0.1:8000/v1"
SERVER_STACK = ("starlette", "sqlalchemy", "uvicorn", "aiosqlite", "pydantic", "multipart")


def without_openai_variables() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("OPENAI_")}


@pytest.mark.parametrize("command", ["upload", "list", "get", "download", "delete"])
def test_every_client_command_defaults_to_the_local_server(
    command: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-a-real-openai-key")
    positional = {"upload": ["f.txt", "--purpose", "batch"], "list": []}.get(command, ["file-1"])
    args = build_parser(serve_flags=False).parse_args([command, *positional])
    assert args.base_url == LOCAL


def test_the_help_names_the_local_default_and_no_hosted_api() -> None:
    shown = subprocess.run(
        [sys.executable, "-m", "openai_files.cli", "list", "--help"],
        capture_output=True,
        text=True,
        env=without_openai_variables(),
        check=True,
    ).stdout
    assert LOCAL in " ".join(shown.split())
    assert "api.openai.com" not in shown


def test_a_local_server_that_is_not_running_gets_a_hint_to_start_it() -> None:
    failure = ConnectionFailed(f"cannot reach {LOCAL}: connection refused")
    hinted = _with_hint(failure, Connection.to(LOCAL))
    assert hinted.startswith(f"cannot reach {LOCAL}: connection refused (")
    assert "make serve" in hinted
    assert "OPENAI_BASE_URL" in hinted
    other = Connection.to("http://127.0.0.1:9/v1")
    assert _with_hint(ConnectionFailed("cannot reach it"), other) == "cannot reach it"


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServerThread]:
    with serve(embedded_app(tmp_path, {"sk-test": "tester"})) as running:
        yield running


@pytest.mark.skipif(shutil.which("script") is None, reason="needs util-linux script for a pty")
def test_another_server_is_named_in_a_terminal_and_not_in_a_pipe(server: ServerThread) -> None:
    command = [sys.executable, "-m", "openai_files.cli", "list"]
    env = {**without_openai_variables(), "OPENAI_BASE_URL": server.url + "/v1"}
    env["OPENAI_API_KEY"] = "sk-test"
    in_terminal = subprocess.run(
        ["script", "-qec", shlex.join(command), "/dev/null"],
        capture_output=True,
        text=True,
        env=env,
        stdin=subprocess.DEVNULL,
        timeout=60,
    )
    assert in_terminal.returncode == 0, in_terminal.stdout
    assert f"server: {server.url}/v1" in in_terminal.stdout
    piped = subprocess.run(command, capture_output=True, text=True, env=env, timeout=60)
    assert piped.returncode == 0, piped.stderr
    assert piped.stderr == ""


def loaded_after(code: str) -> set[str]:
    """The top-level packages of the server stack loaded once ``code`` has run."""
    loaded = f"' '.join(m for m in {SERVER_STACK!r} if m in sys.modules)"
    probe = f"import sys\n{code}\nprint('loaded:', {loaded})"
    done = subprocess.run(
        [sys.executable, "-c", probe],
        capture_output=True,
        text=True,
        env=without_openai_variables(),
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return set(done.stdout.rpartition("loaded:")[2].split())


def test_the_entry_point_and_help_do_not_import_the_server_stack() -> None:
    code = (
        "from openai_files.cli import main\n"
        "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
        "try:\n    main(['list', '--help'])\nexcept SystemExit:\n    pass"
    )
    assert loaded_after(code) == set()


def test_a_client_command_does_not_import_the_server_stack(server: ServerThread) -> None:
    code = (
        "from openai_files.cli import main\n"
        f"assert main(['list', '--base-url', '{server.url}/v1', '--api-key', 'sk-test']) == 0"
    )
    assert loaded_after(code) == set()


def test_serve_still_imports_what_it_serves_with() -> None:
    code = (
        "from openai_files.cli import main\n"
        "try:\n    main(['serve', '--help'])\nexcept SystemExit:\n    pass\n"
        "import openai_files.cli._serve_app"
    )
    assert {"starlette", "sqlalchemy"} <= loaded_after(code)
