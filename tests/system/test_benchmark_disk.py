"""The benchmarks record the filesystem they write to, and warn where creating a file costs
more after mass deletions (ext4 without a journal: `harness.disk`)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

from harness.disk import caveat, filesystem
from harness.report import machine
from render_docs import render


def _journals() -> set[str]:
    """The block devices whose ext4 keeps a journal, as the journal layer lists them."""
    folder = Path("/proc/fs/jbd2")
    return (
        {entry.name.rpartition("-")[0] for entry in folder.iterdir()} if folder.exists() else set()
    )


def test_the_filesystem_of_a_folder_is_the_one_its_mount_names(tmp_path: Path) -> None:
    if shutil.which("findmnt") is None:
        pytest.skip("findmnt (util-linux) is not installed (optional)")
    named = subprocess.run(
        ["findmnt", "-n", "-o", "FSTYPE", "--target", str(tmp_path)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    found = filesystem(tmp_path)
    assert found is not None
    assert found.type == named


def test_ext4_says_whether_it_keeps_a_journal_and_only_without_one_is_warned(
    tmp_path: Path,
) -> None:
    found = filesystem(tmp_path)
    assert found is not None
    if found.type != "ext4":
        assert found.journal is None
        assert caveat(tmp_path) is None
        return
    assert found.journal == (found.device in _journals())
    note = caveat(tmp_path)
    if found.journal:
        assert note is None
    else:
        assert note is not None
        assert "without a journal" in note
        assert "6 minutes" in note


def test_a_filesystem_other_than_ext4_gets_no_warning() -> None:
    found = filesystem("/proc")
    assert found is not None
    assert found.type == "proc"
    assert found.journal is None
    assert caveat("/proc") is None


def _document(disk: dict[str, Any] | None) -> dict[str, Any]:
    found = {"cpu": "a CPU", "cores": 2, "load_average": [0.5, 0.5, 0.5], "python": "3.11.7"}
    return {
        "name": "example",
        "revision": "0" * 40,
        "date": "2026-12-06T00:00:00+00:00",
        "command": "benchmarks/upload.py",
        "machine": {**found, **({} if disk is None else {"disk": disk})},
        "reports": [],
    }


def test_results_record_the_disk_and_the_docs_show_it_where_a_file_has_it() -> None:
    recorded = machine()["disk"]
    assert recorded is not None
    assert {"type", "device", "options", "journal"} <= set(recorded)
    disk = {"type": "ext4", "device": "vda", "options": "rw", "journal": False}
    assert "files written to ext4 on vda without a journal" in render(_document(disk))
    assert "files written" not in render(_document(None))
