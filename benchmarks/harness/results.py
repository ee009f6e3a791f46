"""Results files: the figures the docs show, each from a committed file a script wrote at a
named, clean revision.

Every benchmark script takes ``--results NAME``: after its run it writes its reports to
``benchmarks/results/NAME.json`` with the revision measured (the full commit), the date, the
command and the machine. It refuses to, before measuring anything, when the working tree has
uncommitted changes (outside ``benchmarks/results/``) or with ``--quick``: figures from code no
commit holds, or from smoke-test sizes, cannot stand behind the docs. ``render_docs.py`` renders
the tables of ``docs/benchmarks.md`` from these files, and the test suite checks that the page
matches them.

`finish` ends a script's run the same way everywhere: the report printed (with PASS or FAIL per
target, except under ``--quick``, whose figures say nothing), the results written when asked,
and the exit status: 1 when a target is missed, else 0 (always 0 under ``--quick``).
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from .disk import warn_about_disk
from .report import PROJECT_DIR, RESULTS_DIR, Report, machine, report_json

NAME = re.compile(r"[a-z0-9][a-z0-9-]{0,63}")
"""A results file's name: lowercase letters, digits and dashes."""


class CannotRecord(RuntimeError):
    """Results cannot be written for the docs (a dirty tree, ``--quick``, a bad name)."""


def add_results_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--results",
        metavar="NAME",
        help="write the figures to benchmarks/results/NAME.json, for the docs (refused from a "
        "working tree with uncommitted changes, and with --quick)",
    )


def _git(*args: str) -> str:
    """The output of a git command in the project (empty if it fails), with its leading
    spaces, which ``status --porcelain`` uses."""
    done = subprocess.run(
        ["git", *args], cwd=PROJECT_DIR, capture_output=True, text=True, check=False
    )
    return done.stdout.rstrip() if done.returncode == 0 else ""


def clean_revision() -> str:
    """The commit checked out, in full; `CannotRecord` when the tree differs from it (results
    files aside) or is no git checkout."""
    commit = _git("rev-parse", "HEAD").strip()
    if not commit:
        raise CannotRecord("not a git checkout: the revision measured cannot be named")
    results = RESULTS_DIR.relative_to(PROJECT_DIR).as_posix() + "/"
    changed = [
        line[3:]
        for line in _git("status", "--porcelain", "--untracked-files=all").splitlines()
        if not line[3:].startswith(results)
    ]
    if changed:
        shown = ", ".join(changed[:5]) + (", ..." if len(changed) > 5 else "")
        raise CannotRecord(
            f"the working tree has uncommitted changes ({shown}): commit them, then measure"
        )
    return commit


def check_recordable(options: argparse.Namespace) -> None:
    """Before measuring: `CannotRecord` if ``--results`` was asked for and cannot be honoured."""
    name = getattr(options, "results", None)
    if name is None:
        return
    if not NAME.fullmatch(name):
        raise CannotRecord(f"--results {name!r}: use lowercase letters, digits and dashes")
    if getattr(options, "quick", False):
        raise CannotRecord("--results with --quick: smoke-test figures are not for the docs")
    clean_revision()


def write_results(name: str, reports: Sequence[Report], command: Sequence[str]) -> Path:
    """Write ``reports`` to ``results/<name>.json`` with the clean revision they measured."""
    document: dict[str, Any] = {
        "name": name,
        "revision": clean_revision(),
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": " ".join(command),
        "machine": machine(),
        "reports": [report_json(report) for report in reports],
    }
    RESULTS_DIR.mkdir(exist_ok=True)
    path = RESULTS_DIR / f"{name}.json"
    path.write_text(json.dumps(document, indent=2, ensure_ascii=False) + "\n")
    return path


def read_results(name: str) -> dict[str, Any]:
    document: dict[str, Any] = json.loads((RESULTS_DIR / f"{name}.json").read_text())
    return document


def finish(reports: Report | Sequence[Report], options: argparse.Namespace) -> int:
    """Print the reports, write them when ``--results`` asks, and return the exit status."""
    quick = bool(getattr(options, "quick", False))
    listed = [reports] if isinstance(reports, Report) else list(reports)
    for report in listed:
        report.print(judged=not quick)
    name = getattr(options, "results", None)
    if name is not None:
        script = Path(sys.argv[0]).name
        path = write_results(name, listed, [f"benchmarks/{script}", *sys.argv[1:]])
        print(f"\nresults: {path.relative_to(PROJECT_DIR)}")
    if quick:
        return 0
    return 0 if all(report.passed for report in listed) else 1


def run_and_finish(
    run: Callable[[argparse.Namespace], Report | Sequence[Report]], options: argparse.Namespace
) -> int:
    """``finish(run(options), options)``, but a ``--results`` that cannot be honoured stops the
    script before anything is measured (exit status 3). The disk's `harness.disk.caveat`, if
    any, is printed first."""
    refused = refusal(options)
    if refused is not None:
        return refused
    warn_about_disk()
    return finish(run(options), options)


def refusal(options: argparse.Namespace) -> int | None:
    """Exit status 3, said on stderr, when ``--results`` cannot be honoured; else None."""
    try:
        check_recordable(options)
    except CannotRecord as exc:
        print(f"cannot record results: {exc}", file=sys.stderr)
        return 3
    return None


def run_script(
    name: str,
    options: argparse.Namespace,
    unavailable: Callable[[argparse.Namespace], str | None],
    run: Callable[[argparse.Namespace], Report | Sequence[Report]],
) -> int:
    """A benchmark script's ``main`` after parsing: exit status 2 with ``NAME: cannot run:
    <why>`` on its last line when ``unavailable`` names what is missing, else
    `run_and_finish`. A ``--results`` that cannot be honoured is refused first (status 3)."""
    refused = refusal(options)
    if refused is not None:
        return refused
    missing = unavailable(options)
    if missing is not None:
        print(f"{name}: cannot run: {missing}", file=sys.stderr)
        return 2
    return run_and_finish(run, options)
