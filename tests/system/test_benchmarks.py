"""The benchmark scripts run, their smoke runs judge nothing, and the docs show what the
committed results files hold.

Every script of ``benchmarks/`` with a ``__main__`` is a benchmark unless listed in
`NOT_BENCHMARKS`, so a new one is covered as soon as it is added. What a benchmark must offer:
``--quick``, a run at smoke-test sizes that takes seconds; under it no PASS or FAIL (the
figures say nothing) and exit status 0; exit status 2, with ``cannot run: <reason>`` as the
last line, when a service or tool it needs is missing (the test then skips, or fails under
CI=true, unless the reason ends with "(optional)": a contender to compare with, not a part of
ours). Its figures go to the docs through ``--results NAME`` (`harness.results`)."""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BENCHMARKS = ROOT / "benchmarks"
NOT_BENCHMARKS = {
    "run_all.py": "runs the benchmarks that are run here one by one (its --quick: below)",
    "plots.py": "draws the figures of a results file",
    "render_docs.py": "renders the docs from the results files (checked below)",
    "s3_baseline.py": "a helper process of s3_transfer.py",
}
SCRIPTS = sorted(
    path
    for path in BENCHMARKS.glob("*.py")
    if 'if __name__ == "__main__":' in path.read_text() and path.name not in NOT_BENCHMARKS
)
VERDICT = re.compile(r"\b(PASS|FAIL)\b")


def test_the_scripts_are_found() -> None:
    names = {path.name for path in SCRIPTS}
    assert {"upload.py", "download.py", "list_page.py", "uploads_api.py"} <= names
    assert set(NOT_BENCHMARKS) <= {path.name for path in BENCHMARKS.glob("*.py")}


@pytest.mark.parametrize("script", SCRIPTS, ids=[path.stem for path in SCRIPTS])
def test_every_benchmark_runs_at_quick_sizes_and_judges_nothing(
    script: Path, tmp_path: Path
) -> None:
    done = subprocess.run(
        [sys.executable, str(script), "--quick"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
    )
    output = done.stdout + done.stderr
    if done.returncode == 2:  # under CI=true a failure, unless the reason says "(optional)"
        last = output.strip().splitlines()[-1] if output.strip() else ""
        assert "cannot run" in last, output
        pytest.skip(last)
    assert done.returncode == 0, output
    assert VERDICT.search(done.stdout) is None, done.stdout


def run_python(code: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """``code`` in a fresh interpreter, with ``benchmarks/`` first on the path (as when a
    script of it runs)."""
    prelude = f"import sys; sys.path.insert(0, {str(BENCHMARKS)!r})\n"
    return subprocess.run(
        [sys.executable, "-c", prelude + textwrap.dedent(code)],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
    )


RUN_ALL_WITH_A_STUB = """
    import argparse
    from pathlib import Path
    from types import SimpleNamespace

    import harness.report
    import run_all
    from harness.report import Figure, Report, Target

    harness.report.RESULTS_DIR = Path("results")

    def parse_args(argv):
        return argparse.Namespace(quick="--quick" in argv)

    def run(options):
        report = Report("stub", {"quick": options.quick}, [Figure("speed", 1.0, "MiB/s")])
        report.targets.append(Target("speed", 1.0, 100.0, " MiB/s", at_least=True))
        return report

    stub = SimpleNamespace(__name__="stub", parse_args=parse_args, run=run)
    run_all.BENCHMARKS = (run_all.Benchmark(stub, "embedded"),)
    sys.exit(run_all.main(ARGUMENTS))
"""


def test_run_all_quick_judges_nothing_and_a_full_run_judges_every_target(
    tmp_path: Path,
) -> None:
    quick = run_python(RUN_ALL_WITH_A_STUB.replace("ARGUMENTS", "['--quick']"), tmp_path)
    assert quick.returncode == 0, quick.stdout + quick.stderr
    assert VERDICT.search(quick.stdout) is None, quick.stdout
    assert "not judged" in quick.stdout
    full = run_python(RUN_ALL_WITH_A_STUB.replace("ARGUMENTS", "[]"), tmp_path)
    assert full.returncode == 1, full.stdout + full.stderr
    assert re.search(r"speed\s+1\.00 MiB/s\s+>= 100 MiB/s\s+FAIL", full.stdout), full.stdout
    saved = sorted(path.name for path in (tmp_path / "results").iterdir())
    assert len(saved) == 2
    assert all(name.startswith("bench-") for name in saved)


def test_run_all_pauses_between_benchmarks_not_before_the_first(tmp_path: Path) -> None:
    two = RUN_ALL_WITH_A_STUB.replace(
        'run_all.BENCHMARKS = (run_all.Benchmark(stub, "embedded"),)',
        'second = SimpleNamespace(__name__="second", parse_args=parse_args, run=run)\n'
        "    run_all.BENCHMARKS = (\n"
        '        run_all.Benchmark(stub, "embedded"), run_all.Benchmark(second, "embedded")\n'
        "    )",
    )
    done = run_python(two.replace("ARGUMENTS", "['--quick', '--pause', '0.2']"), tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.count("pausing") == 1, done.stdout
    first, _, rest = done.stdout.partition("pausing 0.2 s before second")
    assert first.count("== stub") == 1, done.stdout  # the first report, then the pause
    assert rest.count("== stub") == 1, done.stdout
    assert "== summary" in rest, done.stdout
    unpaused = run_python(two.replace("ARGUMENTS", "['--quick']"), tmp_path)
    assert unpaused.returncode == 0, unpaused.stdout + unpaused.stderr
    assert "pausing" not in unpaused.stdout, unpaused.stdout


def test_the_docs_show_what_the_committed_results_files_hold(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, str(BENCHMARKS / "render_docs.py"), "--check"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    page = (ROOT / "docs" / "benchmarks.md").read_text()
    shown = re.findall(r"<!-- results: ([a-z0-9-]+) -->", page)
    assert shown, "no table of docs/benchmarks.md comes from a results file"
    for name in shown:
        tracked = subprocess.run(
            ["git", "ls-files", "--error-unmatch", f"benchmarks/results/{name}.json"],
            cwd=ROOT,
            capture_output=True,
            text=True,
        )
        assert tracked.returncode == 0, f"benchmarks/results/{name}.json is not committed"


RECORDING = """
    import argparse
    import subprocess
    from pathlib import Path

    import harness.report
    import harness.results as results

    project = Path("project").resolve()
    (project / "benchmarks" / "results").mkdir(parents=True)
    def git(*args):
        subprocess.run(["git", *args], cwd=project, check=True, capture_output=True)
    git("init", "-q")
    (project / "code.py").write_text("x = 1\\n")
    git("add", "code.py")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "one")
    results.PROJECT_DIR = project
    results.RESULTS_DIR = project / "benchmarks" / "results"

    def attempt(**options):
        try:
            results.check_recordable(argparse.Namespace(**options))
            return "ok"
        except results.CannotRecord as exc:
            return str(exc)

    print("clean:", attempt(results="one", quick=False))
    print("quick:", attempt(results="one", quick=True))
    print("name:", attempt(results="One Two", quick=False))
    (project / "benchmarks" / "results" / "earlier.json").write_text("{}")
    print("results aside:", attempt(results="one", quick=False))
    (project / "code.py").write_text("x = 2\\n")
    print("dirty:", attempt(results="one", quick=False))
    report = harness.report.Report("stub", {})
    try:
        results.write_results("one", [report], ["stub"])
        print("written from a dirty tree")
    except results.CannotRecord:
        print("refused to write")
"""


def test_results_are_recorded_only_from_a_clean_tree_and_never_from_a_quick_run(
    tmp_path: Path,
) -> None:
    done = run_python(RECORDING, tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == "clean: ok"
    assert lines[1].startswith("quick: --results with --quick")
    assert lines[2].startswith("name: --results 'One Two'")
    assert lines[3] == "results aside: ok"
    assert lines[4].startswith("dirty: the working tree has uncommitted changes (code.py)")
    assert lines[5] == "refused to write"
