"""Plots of a benchmark run for the documentation: throughput and memory against baselines.

    .venv/bin/python benchmarks/plots.py benchmarks/results/bench-<time>.json

Reads the JSON a `run_all.py` run wrote and draws, for each benchmark in it, a bar chart of
every throughput (MiB/s, or requests/s) and memory figure with its samples, into
``docs/img/bench-<benchmark>.png``. With no argument it uses the newest full run.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # after the backend is chosen

RESULTS = Path(__file__).parent / "results"
IMAGES = Path(__file__).parents[1] / "docs" / "img"
PLOTTED_UNITS = {"MiB/s": "throughput (MiB/s)", "MiB": "memory growth (MiB)", "req/s": "req/s"}


def newest_run() -> Path:
    runs = sorted(p for p in RESULTS.glob("bench-*.json") if not p.stem.endswith("quick"))
    if not runs:
        raise SystemExit("no full benchmark run in benchmarks/results: run `make bench` first")
    return runs[-1]


def plot_report(report: dict[str, Any], revision: str, out: Path) -> list[Path]:
    """One PNG per unit that the report has figures in; the paths written."""
    written = []
    for unit, axis_label in PLOTTED_UNITS.items():
        figures = [f for f in report["figures"] if f["unit"] == unit]
        if not figures:
            continue
        fig, axis = plt.subplots(figsize=(7, 0.6 * len(figures) + 1.4))
        labels = [f["label"] for f in figures]
        axis.barh(labels, [f["value"] for f in figures], color="#4a7ab7")
        for row, figure in enumerate(figures):
            samples = figure.get("samples") or []
            axis.plot(samples, [row] * len(samples), "k.", markersize=4)
        axis.invert_yaxis()
        axis.set_xlabel(f"{axis_label}: median (bar) and every run (dots)")
        axis.set_title(f"{report['benchmark']} ({revision})")
        fig.tight_layout()
        path = out / f"bench-{report['benchmark']}-{unit.replace('/', '-per-')}.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(path)
    return written


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", nargs="?", type=Path, help="a results JSON (default: newest)")
    args = parser.parse_args(argv)
    run = json.loads((args.run or newest_run()).read_text())
    IMAGES.mkdir(parents=True, exist_ok=True)
    revision = run.get("machine", {}).get("source", "?")
    for report in run["reports"]:
        for path in plot_report(report, revision, IMAGES):
            print(path.relative_to(IMAGES.parents[1]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
