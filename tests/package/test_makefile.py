"""The Makefile as a newcomer uses it: ``make serve`` honours ``PORT``, ``HOST`` and
``DATA_DIR`` (and the ``OPENAI_FILES_*`` variables), ``make quickstart`` installs the SDK the
examples need before it runs one, and the docs have a target that works after ``make serve``.

``make -n`` prints the commands without running them."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[2]

pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="needs make")


def planned(*args: str, env: dict[str, str] | None = None) -> list[str]:
    """The commands ``make -n ARGS`` would run, in a clean environment plus ``env``."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("OPENAI_")}
    clean = {k: v for k, v in clean.items() if k not in {"PORT", "HOST", "DATA_DIR"}}
    done = subprocess.run(
        ["make", "-n", "-C", str(ROOT), *args],
        capture_output=True,
        text=True,
        env={**clean, **(env or {})},
        check=True,
    )
    return done.stdout.splitlines()


def serve_line(*args: str, env: dict[str, str] | None = None) -> str:
    (line,) = [line for line in planned("serve", *args, env=env) if "openai-files serve" in line]
    return line


def test_make_serve_defaults_to_loopback_port_8000_and_data() -> None:
    assert serve_line().endswith("serve --host 127.0.0.1 --port 8000 --data-dir ./data")


def test_make_serve_honours_port_host_and_data_dir() -> None:
    line = serve_line("PORT=8013", "HOST=0.0.0.0", "DATA_DIR=/tmp/files")
    assert line.endswith("serve --host 0.0.0.0 --port 8013 --data-dir /tmp/files")


def test_make_serve_honours_the_servers_own_variables() -> None:
    env = {"OPENAI_FILES_PORT": "8014", "OPENAI_FILES_DATA_DIR": "/tmp/d"}
    assert serve_line(env=env).endswith("--port 8014 --data-dir /tmp/d")


def test_make_quickstart_installs_the_sdk_and_runs_the_quickstart_against_make_serve() -> None:
    lines = planned("-B", "quickstart", "PORT=8015")
    installs = [i for i, line in enumerate(lines) if "pip install" in line and "[examples]" in line]
    runs = [i for i, line in enumerate(lines) if line.endswith("examples/quickstart.py")]
    assert installs
    assert runs
    assert installs[0] < runs[0]
    assert "http://127.0.0.1:8015/v1" in lines[runs[0]]


def test_the_examples_extra_holds_the_sdks_the_examples_import() -> None:
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert 'examples = ["openai>=1.60", "fastapi>=0.115"]' in pyproject


def test_the_docs_targets_need_the_dev_extra_and_serve_beside_the_server() -> None:
    lines = planned("-B", "docs-serve")
    assert any("pip install" in line and "[dev]" in line for line in lines)
    assert any("mkdocs serve --dev-addr 127.0.0.1:8001" in line for line in lines)


def test_the_readme_names_the_make_targets_it_relies_on() -> None:
    readme = (ROOT / "README.md").read_text()
    for target in ("make serve", "make quickstart", "make docs-serve"):
        assert target in readme
    assert ".venv/bin/mkdocs serve" not in readme
    makefile = (ROOT / "Makefile").read_text()
    for target in ("serve:", "quickstart:", "docs-serve:", "examples:"):
        assert f"\n{target}" in makefile
