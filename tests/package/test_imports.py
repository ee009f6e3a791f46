"""The package's public surface and what importing it pulls in."""

from __future__ import annotations

import subprocess
import sys

import openai_files


def test_public_all_is_explicit_sorted_and_importable() -> None:
    names = openai_files.__all__
    assert names == sorted(names)
    assert len(names) == len(set(names))
    for name in names:
        assert hasattr(openai_files, name), name


def test_importing_the_package_loads_no_optional_driver() -> None:
    code = (
        "import sys, openai_files; "
        "print(sorted(m for m in ('obstore', 'asyncpg', 'aiomysql', 'boto3') if m in sys.modules))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "[]"
