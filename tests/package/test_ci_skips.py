"""Under CI=true a skip hides nothing: a test that would skip for a missing tool fails and names
the tool; only a skip declared expected (its reason ends with "(optional)") stays a skip.

Each case runs pytest in a subprocess on a few tests of this suite, with ``PATH`` emptied so
that ``tmux`` and ``script`` are missing."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
TOOL_TESTS = [
    "tests/cli/test_client_commands.py::test_the_progress_bar_shows_in_a_terminal_only",
    "tests/cli/test_client_commands.py::"
    "test_a_session_in_a_real_terminal_shows_progress_and_resumes_a_download",
]
OPTIONAL_TEST = (
    "tests/backends/test_storage_conformance.py::TestLocalStorage::"
    "test_a_presigned_url_serves_the_exact_bytes"
)


def pytest_run(tests: list[str], *, ci: bool, path: Path) -> subprocess.CompletedProcess[str]:
    env = {
        name: value
        for name, value in os.environ.items()
        if name != "CI" and not name.startswith(("PYTEST_", "COV_"))
    }
    env["PATH"] = str(path)
    if ci:
        env["CI"] = "true"
    command = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "-rA", *tests]
    return subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=240)


def test_under_ci_a_missing_tool_fails_the_run_and_is_named(tmp_path: Path) -> None:
    result = pytest_run(TOOL_TESTS, ci=True, path=tmp_path)
    assert result.returncode == 1, result.stdout
    assert "2 errors" in result.stdout, result.stdout  # failed in set-up, where skipif acts
    assert "skipped under CI=true: tmux is not on PATH" in result.stdout
    assert "skipped under CI=true: script is not on PATH" in result.stdout


def test_without_ci_a_missing_tool_skips_the_test_and_says_which(tmp_path: Path) -> None:
    result = pytest_run(TOOL_TESTS, ci=False, path=tmp_path)
    assert result.returncode == 0, result.stdout
    assert "2 skipped" in result.stdout, result.stdout
    assert "tmux is not on PATH (needed for a real terminal)" in result.stdout
    assert "script is not on PATH (needed from util-linux, for a pty)" in result.stdout


def test_under_ci_a_skip_declared_optional_stays_a_skip(tmp_path: Path) -> None:
    result = pytest_run([OPTIONAL_TEST], ci=True, path=tmp_path)
    assert result.returncode == 0, result.stdout
    assert "1 skipped" in result.stdout, result.stdout
    assert "does not presign URLs (optional)" in result.stdout
