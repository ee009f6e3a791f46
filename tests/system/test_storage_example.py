"""``examples/encrypted_tiers.py`` runs as docs/storage.md shows it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

EXAMPLE = Path(__file__).parents[2] / "examples" / "encrypted_tiers.py"


def test_the_encrypted_tiers_example_runs_to_completion() -> None:
    result = subprocess.run(
        [sys.executable, str(EXAMPLE)], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("hot tier: TierStats(hits=2, misses=2, fills=2")
    assert lines[1:] == [
        "no plaintext on disk, in either tier",
        "rotated to '2027-06', read the file again, and deleted it",
    ]
