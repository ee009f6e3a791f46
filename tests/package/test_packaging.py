"""The package as users get it: a wheel and an sdist that build, install and import cleanly."""

from __future__ import annotations

import email
import os
import re
import signal
import subprocess
import sys
import time
import venv
import zipfile
from pathlib import Path

import httpx
import pytest

from ..support import free_port

ROOT = Path(__file__).parents[2]
DRIVERS = {
    "postgres": "asyncpg",
    "mysql": "aiomysql",
    "s3": "obstore",
    "encryption": "cryptography",
}


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    subprocess.run(
        [sys.executable, "-m", "build", "--sdist", "--wheel", "--outdir", str(out), str(ROOT)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    return out


def wheel_metadata(dist: Path) -> email.message.Message:
    (wheel,) = dist.glob("*.whl")
    with zipfile.ZipFile(wheel) as archive:
        name = next(n for n in archive.namelist() if n.endswith(".dist-info/METADATA"))
        return email.message_from_bytes(archive.read(name))


def test_the_wheel_ships_the_typed_package_and_its_command(dist: Path) -> None:
    (wheel,) = dist.glob("*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        entry_points = next(n for n in names if n.endswith("entry_points.txt"))
        assert "openai-files = openai_files.cli:main" in archive.read(entry_points).decode()
    assert "openai_files/py.typed" in names
    assert "openai_files/testing/__init__.py" in names
    assert len(list(dist.glob("*.tar.gz"))) == 1


def test_each_extra_pulls_in_only_its_driver(dist: Path) -> None:
    requirements = wheel_metadata(dist).get_all("Requires-Dist") or []
    for extra, driver in DRIVERS.items():
        wanted = [r for r in requirements if re.search(rf"extra == .{extra}.$", r)]
        assert [r.split(">")[0].split("=")[0].strip() for r in wanted] == [driver], extra
    base = [r for r in requirements if "extra ==" not in r]
    assert not any(driver in r for r in base for driver in DRIVERS.values())


@pytest.fixture(scope="module")
def clean_env(dist: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh virtual environment with the wheel installed, without extras: its ``bin``."""
    (wheel,) = dist.glob("*.whl")
    env = tmp_path_factory.mktemp("clean-env")
    venv.create(env, with_pip=True)
    python = env / "bin" / "python"
    subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", str(wheel)],
        check=True,
        capture_output=True,
        timeout=600,
    )
    return env / "bin"


def test_a_clean_environment_installs_the_wheel_and_imports_it_without_extras(
    clean_env: Path,
) -> None:
    python = clean_env / "python"
    probe = (
        "import importlib.util, openai_files; "
        "print(openai_files.__version__, "
        "[m for m in ('obstore', 'asyncpg', 'aiomysql') if importlib.util.find_spec(m)])"
    )
    result = subprocess.run([str(python), "-c", probe], capture_output=True, text=True, check=True)
    assert result.stdout.split(" ", 1) == ["0.1.0", "[]\n"]
    library = subprocess.run(
        [str(python), str(ROOT / "examples" / "library.py")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert library.returncode == 0, library.stderr


def test_a_clean_environment_serves_the_quickstart(clean_env: Path, tmp_path: Path) -> None:
    """`openai-files serve` from the installed wheel, and the quickstart's SDK client (run with
    this interpreter, which has the `openai` SDK) against it."""
    port = free_port()
    base_url = f"http://127.0.0.1:{port}/v1"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "VIRTUAL_ENV"))}
    command = [str(clean_env / "openai-files"), "serve", "--host", "127.0.0.1", "--port", str(port)]
    command += ["--data-dir", str(tmp_path / "data"), "--api-key", "sk-quickstart=team-a"]
    log = tmp_path / "serve.log"
    with log.open("w") as output:
        server = subprocess.Popen(
            command, cwd=tmp_path, env=env, stdout=output, stderr=subprocess.STDOUT
        )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                assert httpx.get(f"{base_url}/files", timeout=1).status_code == 401
                break
            except httpx.TransportError:
                assert server.poll() is None, log.read_text()
                assert time.monotonic() < deadline, log.read_text()
                time.sleep(0.1)
        quickstart = subprocess.run(
            [sys.executable, str(ROOT / "examples" / "quickstart.py")],
            env={**env, "OPENAI_BASE_URL": base_url, "OPENAI_API_KEY": "sk-quickstart"},
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert quickstart.returncode == 0, quickstart.stderr + log.read_text()
        listed, summary = quickstart.stdout.splitlines()
        file_id, filename, size = listed.split()
        assert file_id.startswith("file-")
        assert filename == "requests.jsonl"
        assert int(size) > 0
        assert summary == f"downloaded {file_id} intact; deleted it"
        remaining = httpx.get(
            f"{base_url}/files", headers={"Authorization": "Bearer sk-quickstart"}
        )
        assert remaining.json()["data"] == []
        assert (tmp_path / "data" / "files.db").is_file()
    finally:
        server.terminate()
        server.wait(timeout=20)
    # A clean shutdown; uvicorn exits by the signal it handled.
    assert server.returncode in (0, -signal.SIGTERM), log.read_text()
    assert "Application shutdown complete." in log.read_text()


@pytest.mark.parametrize(
    ("backend", "extra"),
    [
        (["--storage", "s3://bucket"], "s3"),
        (["--metadata", "postgresql+asyncpg://postgres@127.0.0.1:5432/files"], "postgres"),
        (["--metadata", "mysql+aiomysql://root@127.0.0.1:3306/files"], "mysql"),
    ],
)
def test_a_base_install_names_the_missing_extra_in_one_line(
    clean_env: Path, tmp_path: Path, backend: list[str], extra: str
) -> None:
    command = [str(clean_env / "openai-files"), "serve", "--port", str(free_port()), *backend]
    command += ["--data-dir", str(tmp_path / "data")]
    done = subprocess.run(command, capture_output=True, text=True, cwd=tmp_path, timeout=60)
    assert done.returncode == 1, done.stderr
    assert done.stderr.count("\n") == 1, done.stderr
    assert done.stderr.startswith("openai-files serve: error: ")
    assert f"pip install 'openai-files[{extra}]'" in done.stderr
    assert "Traceback" not in done.stderr


def test_a_base_install_runs_the_command_line_client_against_its_own_server(
    clean_env: Path, tmp_path: Path
) -> None:
    """The README's client commands with the base install only: upload, list, get, download,
    delete against an open ``openai-files serve``."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "VIRTUAL_ENV"))}
    command = [str(clean_env / "openai-files"), "serve", "--port", str(port)]
    command += ["--data-dir", str(tmp_path / "data")]
    log = tmp_path / "serve.log"
    with log.open("w") as output:
        server = subprocess.Popen(
            command, cwd=tmp_path, env=env, stdout=output, stderr=subprocess.STDOUT
        )
    (tmp_path / "notes.txt").write_text("hello\n")

    def client(*args: str) -> str:
        done = subprocess.run(
            [str(clean_env / "openai-files"), *args, "--base-url", f"http://127.0.0.1:{port}/v1"],
            capture_output=True,
            text=True,
            cwd=tmp_path,
            env=env,
            timeout=60,
        )
        assert done.returncode == 0, done.stderr + log.read_text()
        return done.stdout

    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.get(f"http://127.0.0.1:{port}/v1/files", timeout=1)
                break
            except httpx.TransportError:
                assert server.poll() is None, log.read_text()
                assert time.monotonic() < deadline, log.read_text()
                time.sleep(0.1)
        file_id = client("upload", "notes.txt", "--purpose", "assistants").strip()
        assert file_id in client("list")
        assert "notes.txt" in client("get", file_id)
        client("download", file_id, "-o", "copy.txt")
        assert (tmp_path / "copy.txt").read_text() == "hello\n"
        assert client("delete", file_id) == f"deleted {file_id}\n"
    finally:
        server.terminate()
        server.wait(timeout=20)
    assert "the server is OPEN" in log.read_text()
