"""Every benchmark can write its figures for the docs: ``--results NAME`` is taken by each
script of ``benchmarks/`` and checked before anything is measured (`harness.results`)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.system.test_benchmarks import SCRIPTS


@pytest.mark.parametrize("script", SCRIPTS, ids=[path.stem for path in SCRIPTS])
def test_every_benchmark_refuses_a_results_name_it_cannot_honour_before_measuring(
    script: Path, tmp_path: Path
) -> None:
    done = subprocess.run(
        [sys.executable, str(script), "--results", "Not A Name"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    output = done.stdout + done.stderr
    if done.returncode == 2 and "cannot run" in output:  # a service it needs is missing
        pytest.skip(output.strip().splitlines()[-1])
    assert done.returncode == 3, output
    assert "cannot record results: --results 'Not A Name'" in output, output
    assert list(tmp_path.iterdir()) == [], "something was measured before the refusal"
