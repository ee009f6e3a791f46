"""Figures, targets and how they are printed and saved: the results side of the benchmarks."""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path
from typing import Any

from .disk import filesystem

PROJECT_DIR = Path(__file__).resolve().parents[2]
RESULTS_DIR = PROJECT_DIR / "benchmarks" / "results"


def median(values: Iterable[float]) -> float:
    return statistics.median(list(values))


@dataclass(frozen=True)
class Figure:
    """One measured value, e.g. ``Figure("ours", 512.3, "MiB/s", samples=[...])``."""

    label: str
    value: float
    unit: str
    samples: list[float] = field(default_factory=list)

    def __str__(self) -> str:
        digits = 2 if self.unit and abs(self.value) < 1000 else 0
        return f"{self.value:,.{digits}f} {self.unit}".rstrip()

    @property
    def runs(self) -> int:
        return len(self.samples) or 1


@dataclass(frozen=True)
class Target:
    """A ratio or amount and the bound it must respect (``at_least`` or at most ``limit``)."""

    name: str
    value: float
    limit: float
    unit: str
    at_least: bool

    @property
    def passed(self) -> bool:
        return self.value >= self.limit if self.at_least else self.value <= self.limit

    @property
    def bound(self) -> str:
        return f"{'>=' if self.at_least else '<='} {self.limit:g}{self.unit}"

    @property
    def verdict(self) -> str:
        return "PASS" if self.passed else "FAIL"


@dataclass
class Report:
    """The figures and targets of one benchmark, with the settings it ran with."""

    benchmark: str
    settings: dict[str, Any]
    figures: list[Figure] = field(default_factory=list)
    targets: list[Target] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return all(target.passed for target in self.targets)

    def print(self, *, judged: bool = True) -> None:
        """The figures, then the targets: with PASS or FAIL when ``judged``, else (figures at
        smoke-test sizes) without a verdict."""
        settings = ", ".join(f"{key}={value}" for key, value in self.settings.items())
        print(f"\n== {self.benchmark} ({settings})")
        rows = [[figure.label, str(figure), str(figure.runs)] for figure in self.figures]
        print_table(["figure", "median", "runs"], rows)
        if self.targets:
            print()
            print_table(
                ["target", "measured", "bound", ""], target_rows(self.targets, judged=judged)
            )
        if not judged and self.targets:
            print(UNJUDGED)


UNJUDGED = "(--quick: smoke-test sizes, the targets are not judged)"


def target_rows(targets: Iterable[Target], *, judged: bool = True) -> list[list[str]]:
    return [
        [
            target.name,
            f"{target.value:.2f}{target.unit}",
            target.bound,
            target.verdict if judged else "-",
        ]
        for target in targets
    ]


def print_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    widths = [max(len(str(cell)) for cell in column) for column in zip(headers, *rows, strict=True)]
    for row in [headers, ["-" * width for width in widths], *rows]:
        print("  ".join(str(cell).ljust(width) for cell, width in zip(row, widths, strict=True)))


def machine() -> dict[str, Any]:
    """What the figures depend on: CPU, cores, load, Python, the HTTP stack, our revision,
    and the filesystem of the temporary directory, where the benchmarks write."""
    disk = filesystem(tempfile.gettempdir())
    return {
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "load_average": os.getloadavg(),
        "versions": {
            name: version(name)
            for name in ("starlette", "uvicorn", "httptools", "uvloop", "h11", "anyio")
        },
        "source": _source_revision(),
        "disk": None if disk is None else disk.as_json(),
    }


def _source_revision() -> str:
    """The commit measured, with ``+dirty`` when ``src/`` has uncommitted changes (a results
    file for the docs needs the whole tree clean: `harness.results`)."""

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", *args], cwd=PROJECT_DIR, capture_output=True, text=True, check=False
        ).stdout.strip()

    commit = git("rev-parse", "--short", "HEAD") or "unknown"
    return commit + ("+dirty" if git("status", "--porcelain", "--", "src") else "")


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.partition(":")[2].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def save(reports: Sequence[Report], *, quick: bool) -> Path:
    """Write the reports as JSON under ``results/`` and return the file's path."""
    now = datetime.now(UTC)
    document = {
        "date": now.isoformat(timespec="seconds"),
        "quick": quick,
        "machine": machine(),
        "passed": all(report.passed for report in reports),
        "reports": [report_json(report) for report in reports],
    }
    RESULTS_DIR.mkdir(exist_ok=True)
    path = RESULTS_DIR / f"bench-{now:%Y%m%d-%H%M%S}{'-quick' if quick else ''}.json"
    path.write_text(json.dumps(document, indent=2) + "\n")
    return path


def report_json(report: Report) -> dict[str, Any]:
    data = asdict(report)
    for target, source in zip(data["targets"], report.targets, strict=True):
        target["passed"] = source.passed
    return data
