"""Render the tables of ``docs/benchmarks.md`` from the committed results files.

A table of the page that comes from a results file sits between two markers::

    <!-- results: list-page -->
    ...rendered from benchmarks/results/list-page.json...
    <!-- end results -->

This script rewrites what is between them: where and when the figures were measured (the
revision, the date, the machine, the command), each report's figures (median and runs) and its
targets (measured, bound, PASS or FAIL). ``--check`` changes nothing and exits with status 1
when the page differs from what the results files render (the test suite runs it), naming the
blocks that do. Figures on the page outside such blocks are not from a results file, and the
page says so where they are.

    .venv/bin/python benchmarks/render_docs.py           # rewrite docs/benchmarks.md
    .venv/bin/python benchmarks/render_docs.py --check   # exit 1 if it is out of date
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from harness.disk import Filesystem
from harness.report import PROJECT_DIR, RESULTS_DIR

PAGE = PROJECT_DIR / "docs" / "benchmarks.md"
BLOCK = re.compile(
    r"(?P<open><!-- results: (?P<name>[a-z0-9-]+) -->\n)(?P<body>.*?)"
    r"(?P<close><!-- end results -->)",
    re.DOTALL,
)


def _cell(text: object) -> str:
    return str(text).replace("|", "\\|")


def _number(value: float, unit: str) -> str:
    digits = 2 if unit and abs(value) < 1000 else 0
    return f"{value:,.{digits}f} {unit}".rstrip()


def _disk(found: dict[str, Any] | None) -> str:
    """Where the files were written, for results files that say (older ones do not)."""
    if not found:
        return ""
    return f", files written to {Filesystem(**found)}"


def render(document: dict[str, Any]) -> str:
    """The Markdown of one results file."""
    found = document["machine"]
    load = ", ".join(f"{value:.2f}" for value in found["load_average"])
    lines = [
        f"Measured at revision `{document['revision'][:7]}` on {document['date'][:10]}: "
        f"{found['cpu']}, {found['cores']} cores, load average {load} at the end, Python "
        f"{found['python']}{_disk(found.get('disk'))}; `{document['command']}` (from "
        f"`benchmarks/results/{document['name']}.json`).",
        "",
    ]
    for report in document["reports"]:
        settings = ", ".join(f"{key}={value}" for key, value in report["settings"].items())
        lines += [f"**{_cell(report['benchmark'])}** ({_cell(settings)})", ""]
        lines += ["| figure | median | runs |", "|---|---|---|"]
        for figure in report["figures"]:
            runs = len(figure["samples"]) or 1
            value = _number(figure["value"], figure["unit"])
            lines.append(f"| {_cell(figure['label'])} | {_cell(value)} | {runs} |")
        if report["targets"]:
            lines += ["", "| target | measured | bound | |", "|---|---|---|---|"]
            for target in report["targets"]:
                bound = f"{'>=' if target['at_least'] else '<='} {target['limit']:g}"
                verdict = "PASS" if target["passed"] else "**FAIL**"
                measured = f"{target['value']:.2f}{target['unit']}"
                lines.append(
                    f"| {_cell(target['name'])} | {measured} | {bound}{target['unit']} | "
                    f"{verdict} |"
                )
        lines.append("")
    return "\n".join(lines)


def rendered(page: str, results: Path = RESULTS_DIR) -> tuple[str, list[str]]:
    """The page with every block rendered from its results file, and the names of the blocks
    that changed."""
    changed: list[str] = []

    def block(match: re.Match[str]) -> str:
        name = match["name"]
        path = results / f"{name}.json"
        if not path.exists():
            raise SystemExit(f"docs/benchmarks.md shows results {name!r}: {path} is missing")
        body = render(json.loads(path.read_text()))
        if body != match["body"]:
            changed.append(name)
        return match["open"] + body + match["close"]

    return BLOCK.sub(block, page), changed


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.partition("\n")[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if the page is stale")
    options = parser.parse_args(argv)
    page = PAGE.read_text()
    new, changed = rendered(page)
    if options.check:
        if changed:
            print(f"docs/benchmarks.md is stale for: {', '.join(changed)}")
            print("run: .venv/bin/python benchmarks/render_docs.py")
            return 1
        print("docs/benchmarks.md matches the results files")
        return 0
    PAGE.write_text(new)
    print(f"rendered: {', '.join(changed) or 'nothing changed'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
