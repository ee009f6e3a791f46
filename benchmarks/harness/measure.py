"""What is measured of a server process (CPU, page faults, RSS, descriptors), and how runs are
ordered so that the machine's drift is shared fairly."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

_T = TypeVar("_T")


@dataclass(frozen=True)
class ProcessCounters:
    """CPU seconds (user + system, all threads) and minor page faults of a process so far."""

    cpu_seconds: float
    minor_faults: int

    @classmethod
    def of(cls, pid: int) -> ProcessCounters:
        # Fields after the parenthesised command name, from field 3 (state) on: see proc(5).
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
        minor_faults, user, system = int(fields[7]), int(fields[11]), int(fields[12])
        return cls((user + system) / os.sysconf("SC_CLK_TCK"), minor_faults)

    def __sub__(self, other: ProcessCounters) -> ProcessCounters:
        return ProcessCounters(
            self.cpu_seconds - other.cpu_seconds, self.minor_faults - other.minor_faults
        )


def tree_cpu_seconds(pid: int) -> float:
    """CPU seconds (user + system) of the process ``pid`` and of every live process it started,
    such as the workers of a server that runs several."""
    total = ProcessCounters.of(pid).cpu_seconds
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            children = (task / "children").read_text().split()
        except OSError:  # the thread ended since it was listed
            continue
        total += sum(tree_cpu_seconds(int(child)) for child in children)
    return total


def _status_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    raise RuntimeError(f"no {field} in /proc/{pid}/status")


def open_descriptors(pid: int) -> tuple[int, int]:
    """How many descriptors ``pid`` has open: (files, pipes and the like; sockets). Sockets
    come and go with connection pools; the rest should not grow."""
    files = sockets = 0
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:  # closed since it was listed
            continue
        if target.startswith("socket:"):
            sockets += 1
        else:
            files += 1
    return files, sockets


def rss_bytes(pid: int) -> int:
    """The resident set size of ``pid`` now (VmRSS)."""
    return _status_kib(pid, "VmRSS") * 1024


def peak_rss_bytes(pid: int) -> int:
    """The highest resident set size of ``pid`` (VmHWM) since start or the last reset."""
    return _status_kib(pid, "VmHWM") * 1024


def reset_peak_rss(pid: int) -> bool:
    """Reset VmHWM to the current RSS (Linux ``clear_refs`` 5); False where not permitted."""
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def rotated(items: Sequence[_T], turn: int) -> list[_T]:
    """``items`` starting at ``turn``: alternating the order of contenders spreads any drift
    of the machine (caches, writeback, clock) evenly over them."""
    shift = turn % len(items)
    return [*items[shift:], *items[:shift]]


def settle_disk() -> None:
    """Flush dirty pages so that the writeback of one run does not slow down the next."""
    os.sync()
