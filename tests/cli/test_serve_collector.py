"""``serve`` sets its process's garbage collector for serving once its app has started: what
was alive then is frozen out of the collector's sight, and the first threshold is raised.
Run in a child process, so that the test runner's own collector is left as it is."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from openai_files.cli._collector import FIRST_THRESHOLD

CHILD = """
import asyncio, gc, json, sys
from openai_files.cli import build_parser
from openai_files.cli._serve_app import build_app

async def main():
    before = gc.get_threshold()[0]
    app = build_app(build_parser().parse_args(["serve", "--data-dir", sys.argv[1]]))
    seen = {"before": before, "built": [gc.get_freeze_count(), gc.get_threshold()[0]]}
    async with app.router.lifespan_context(app):
        seen["started"] = [gc.get_freeze_count(), gc.get_threshold()[0]]
        cycle = []
        cycle.append(cycle)
        del cycle
        seen["cycle collected"] = gc.collect()
    print(json.dumps(seen))

asyncio.run(main())
"""


def test_the_collector_is_set_for_serving_once_the_app_has_started(tmp_path: Path) -> None:
    child = subprocess.run(
        [sys.executable, "-c", CHILD, str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    seen = json.loads(child.stdout.splitlines()[-1])
    assert seen["built"] == [0, seen["before"]]  # building the app alone changes nothing
    frozen, threshold = seen["started"]
    assert frozen > 10_000  # the modules, the app and its backends
    assert threshold == FIRST_THRESHOLD
    assert seen["cycle collected"] >= 1  # reference cycles made later are still collected
