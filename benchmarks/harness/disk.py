"""The filesystem the benchmarks write to, recorded with their figures.

What a file costs to create depends on it. On ext4 without a journal, the kernel avoids
handing out an inode freed in the last minutes: to create a file it reads past every such
inode of its block group, and a file created in a group where many files were just deleted
costs far more system time (measured on a 2-core VM: 620 to 740 µs for ``open(O_CREAT)``
within minutes of deleting 10,000 files or more, 29 µs once the disk had been left alone for
six minutes). A test run, or a benchmark's own cleanup, deletes that many, so on such a
filesystem a benchmark that writes files is measured after a pause (`caveat`).
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

QUIET_MINUTES = 6
"""How long a filesystem without a journal should be left without mass deletions before a
benchmark that creates files: the kernel counts an inode as recently freed for up to 360 s
(60 s, plus 300 s while the inode table's block has not been written back)."""


@dataclass(frozen=True)
class Filesystem:
    """The filesystem that holds a path: its type, block device and mount options, and
    whether it keeps a journal (None where that cannot be told: not ext4)."""

    type: str
    device: str
    options: str
    journal: bool | None

    def as_json(self) -> dict[str, Any]:
        return asdict(self)

    def __str__(self) -> str:
        journal = {True: ", with a journal", False: " without a journal", None: ""}[self.journal]
        return f"{self.type} on {self.device}{journal}"


def filesystem(path: str | os.PathLike[str]) -> Filesystem | None:
    """The filesystem that holds ``path``, from ``/proc/self/mountinfo`` (None off Linux)."""
    try:
        mounts = Path("/proc/self/mountinfo").read_text().splitlines()
    except OSError:
        return None
    target = Path(path).resolve()
    best: tuple[int, list[str], list[str]] | None = None  # depth, fields before and after " - "
    for line in mounts:
        fields, _, rest = line.partition(" - ")
        parts, after = fields.split(), rest.split()
        if len(parts) < 6 or len(after) < 3:
            continue
        mount_point = Path(parts[4].replace("\\040", " "))
        if mount_point != target and mount_point not in target.parents:
            continue
        depth = len(mount_point.parts)
        if best is None or depth >= best[0]:  # the last of equal mounts is the one seen
            best = (depth, parts, after)
    if best is None:
        return None
    _, parts, after = best
    device = _block_device(parts[2]) or after[1]
    options = ",".join(dict.fromkeys([*parts[5].split(","), *after[2].split(",")]))
    return _with_journal(Filesystem(after[0], device, options, None))


def caveat(path: str | os.PathLike[str]) -> str | None:
    """A warning to print before a benchmark that creates files under ``path``, when its
    filesystem makes the creation of a file cost more after mass deletions."""
    found = filesystem(path)
    if found is None or found.journal is not False:
        return None
    return (
        f"note: {path} is on {found}: creating a file there costs far more for up to "
        f"{QUIET_MINUTES} minutes after many files were deleted (a test run, another "
        "benchmark). Leave the disk that long without such deletions before measuring."
    )


def warn_about_disk() -> None:
    """Print the `caveat` of the temporary directory, where the benchmarks write, if any."""
    note = caveat(tempfile.gettempdir())
    if note is not None:
        print(note, flush=True)


def _block_device(numbers: str) -> str | None:
    """The kernel's name of the block device ``major:minor`` (``vda``, ``dm-0``)."""
    try:
        return Path(os.readlink(f"/sys/dev/block/{numbers}")).name
    except OSError:
        return None


def _with_journal(found: Filesystem) -> Filesystem:
    if found.type != "ext4":
        return found
    try:  # the journal's thread, or "<none>"
        task = Path(f"/sys/fs/ext4/{found.device}/journal_task").read_text().strip()
    except OSError:
        return found
    return Filesystem(found.type, found.device, found.options, task != "<none>")
